"""The service's persistent job queue: one SQLite file in DATAROOT/service/, safe across threads and restarts.

A job is a render (speech → video with a trained avatar) or a training (a new avatar from an uploaded video).
Jobs survive a restart: queued jobs stay queued, and a job that was running when the service stopped is queued
again (its outputs are written atomically, so a half-made video never exists; a training resumes from its last
checkpoint).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from amg.core.errors import AmgError

_ID_RE = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- render | train
    avatar TEXT NOT NULL,
    audio TEXT,                    -- the speech's name under input_data/audio (render jobs)
    status TEXT NOT NULL,          -- queued | running | done | failed | cancelled
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    options TEXT NOT NULL DEFAULT '{}'  -- a render's motion options (seed, blinks, blink_rate), as JSON
)
"""
# Columns added since the first release, for job databases made before them: (name, definition).
_ADDED_COLUMNS = (("options", "TEXT NOT NULL DEFAULT '{}'"),)


def validate_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _ID_RE.match(job_id):
        raise AmgError(f"Invalid job id {job_id!r}: job ids are 32 lowercase hex digits.")
    return job_id


@dataclass
class Job:
    id: str
    kind: str
    avatar: str
    audio: str | None
    status: str
    stage: str
    progress: float
    error: str
    created: float
    started: float | None
    finished: float | None
    options: str  # JSON: the render's motion options (amg.config.MotionOptions fields)

    @property
    def eta_s(self) -> float | None:
        """Seconds left, extrapolated from the progress so far (None until there is some)."""
        if self.status != "running" or not self.started or self.progress <= 0.01:
            return None
        elapsed = time.time() - self.started
        return elapsed * (1 - self.progress) / self.progress

    def as_dict(self) -> dict:
        return asdict(self) | {"eta_s": self.eta_s, "options": json.loads(self.options)}


class JobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, definition in _ADDED_COLUMNS:
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")

    def _one(self, sql: str, args: tuple = ()) -> Job | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return Job(**row) if row else None

    def add(
        self, kind: str, avatar: str, audio: str | None = None, job_id: str | None = None, options: dict | None = None
    ) -> Job:
        job_id = job_id or uuid.uuid4().hex
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, avatar, audio, status, created, options) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (job_id, kind, avatar, audio, time.time(), json.dumps(options or {})),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list(self, avatar: str | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs ORDER BY created DESC", ()
        if avatar is not None:
            sql, args = "SELECT * FROM jobs WHERE avatar = ? ORDER BY created DESC", (avatar,)
        with self._lock:
            return [Job(**row) for row in self._db.execute(sql, args).fetchall()]

    def last(self, avatar: str, kind: str) -> Job | None:
        """Avatar `avatar`'s newest job of `kind` (render or train), or None."""
        return self._one(
            "SELECT * FROM jobs WHERE avatar = ? AND kind = ? ORDER BY created DESC LIMIT 1", (avatar, kind)
        )

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to run; None when the job is not waiting."""
        if job.status != "queued":
            return None
        with self._lock:
            ahead = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND created < ?", (job.created,)
            ).fetchone()[0]
        return ahead + 1

    def claim_next(self) -> Job | None:
        """Atomically mark the oldest queued job running and return it."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET status = 'running', started = ?, progress = 0, stage = '' WHERE id = "
                "(SELECT id FROM jobs WHERE status = 'queued' ORDER BY created LIMIT 1) RETURNING *",
                (time.time(),),
            ).fetchone()
        return Job(**row) if row else None

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET stage = ?, progress = ? WHERE id = ? AND status = 'running'", (stage, progress, job_id)
            )

    def finish(self, job_id: str, status: str, error: str = "") -> None:
        """Mark a running job done, failed or cancelled (a job cancelled meanwhile stays cancelled)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished = ?, progress = CASE WHEN ? = 'done' THEN 1 "
                "ELSE progress END WHERE id = ? AND status = 'running'",
                (status, error, time.time(), status, job_id),
            )

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status IN ('queued', 'running')",
                (time.time(), job_id),
            )

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def requeue_interrupted(self) -> int:
        """Jobs left running by a stopped service run again from the start; returns how many."""
        with self._lock:
            return self._db.execute(
                "UPDATE jobs SET status = 'queued', started = NULL, progress = 0, stage = '' WHERE status = 'running'"
            ).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
