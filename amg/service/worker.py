"""Runs the queued jobs: a fixed number of worker threads, each taking the oldest queued job.

Bounded concurrency: on a 2-core machine one render at a time is fastest (the generator already uses both
cores), so `workers` defaults to 1. Loaded avatars are kept and reused across jobs; a job's progress goes to the
store as the stages report it, and a job cancelled meanwhile is stopped at its next progress report.
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from amg.config import AvatarConfig
from amg.core.layout import Layout
from amg.core.progress import reporting_to
from amg.service.jobs import Job, JobStore
from amg.service.redact import without_path

log = logging.getLogger(__name__)

# At most this many avatars' generators stay loaded, the least recently used given back first: each holds its
# candidate bank and, once it has rendered in the source's frame, up to about 1 GB of an HD video's frames.
LOADED_AVATARS = 4

# The share of a job's progress bar each stage takes (a stage not listed takes all of it). Before rendering 10
# minutes of speech, its features and head motion take about a quarter of the job; a training job's speech
# features come before its first model, and head motion is sampled to calibrate the pose model after it.
STAGE_SHARES = {
    "train": {
        "preprocess": (0.0, 0.1),
        "audio.embedding": (0.1, 0.12),
        "audio.vad": (0.12, 0.13),
        "motion.expression": (0.13, 0.2),
        "motion.pose": (0.2, 0.27),
        "motion.head": (0.27, 0.27),
        "gan": (0.27, 1.0),
    },
    "render": {
        "audio.embedding": (0.0, 0.1),
        "audio.vad": (0.1, 0.15),
        "motion.head": (0.15, 0.25),
        "render": (0.25, 1.0),
    },
}
PROGRESS_INTERVAL_S = 0.5  # the store is written at most this often per job


def stage_progress(kind: str, progress: float) -> list[dict]:
    """Each stage of a `kind` job with its own progress from 0 to 1, read off the job's overall progress (the
    web page draws one bar per stage); stages that take no share of the bar are left out."""
    return [
        {"stage": stage, "progress": round(min(max((progress - low) / (high - low), 0.0), 1.0), 3)}
        for stage, (low, high) in STAGE_SHARES[kind].items()
        if high > low
    ]


def training_config(options: dict, precision: str = "auto") -> AvatarConfig:
    """What a training job trains with: its preset (`default` unless it names one), then its `--set`-style
    overrides (`{"gan.steps": "500"}`), over the service's precision."""
    from amg.config import load_config, preset_overrides

    overrides = {"precision": precision} | options.get("set", {})
    return load_config(AvatarConfig, None, preset_overrides(options.get("preset", "default")), **overrides)


class Cancelled(Exception):
    """The job was cancelled (deleted) while it ran."""


class Runner(Protocol):
    """What the worker calls to do a job; the real one runs AMG's pipeline, tests may pass a light one."""

    def render(self, job: Job) -> Path: ...

    def train(self, job: Job) -> None: ...

    def close(self) -> None:
        """Give back what the runner holds (loaded generators, a cluster's actors)."""


class PipelineRunner:
    """Renders and trains with AMG's pipeline; keeps each avatar's generator loaded between jobs."""

    def __init__(self, layout: Layout, avatar_cfg, render_cfg):
        self.layout, self.avatar_cfg, self.render_cfg = layout, avatar_cfg, render_cfg
        self._generators: collections.OrderedDict[str, tuple[float, object]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.loads: collections.Counter[str] = collections.Counter()  # generators loaded, per avatar

    def _generator(self, avatar: str):
        from amg.gan.inference import AvatarGenerator

        stamp = self.layout.gan_checkpoint(avatar).stat().st_mtime
        with self._lock:
            cached = self._generators.get(avatar)
            if cached is None or cached[0] != stamp:  # a retrained avatar is loaded again
                cached = (
                    stamp,
                    AvatarGenerator(
                        self.layout, avatar, engine=self.render_cfg.engine, precision=self.render_cfg.precision
                    ),
                )
                self._generators[avatar] = cached
                self.loads[avatar] += 1
            self._generators.move_to_end(avatar)
            while len(self._generators) > LOADED_AVATARS:  # a job still rendering with it keeps its own reference
                self._generators.popitem(last=False)
            return cached[1]

    def render(self, job: Job) -> Path:
        from amg.config import MotionOptions
        from amg.pipeline import render

        generator = self._generator(job.avatar)
        options = json.loads(job.options)
        # Jobs queued before the label and framing options have none: the service's own then.
        cfg = replace(
            self.render_cfg,
            label=options.pop("label", self.render_cfg.label),
            framing=options.pop("framing", self.render_cfg.framing),
        )
        return render(self.layout, job.audio, job.avatar, MotionOptions(**options), cfg, generator=generator)

    def close(self) -> None:
        with self._lock:
            self._generators.clear()

    def live(self, avatar: str, on_frame, options, framing: str | None = None):
        """A LiveSession of `avatar` (its generator shared with the render jobs), framed as asked or as the
        service renders files."""
        from amg.config import LiveConfig
        from amg.live import LiveSession

        cfg = LiveConfig(framing=framing or self.render_cfg.framing)
        return LiveSession(self.layout, avatar, on_frame, options, cfg, generator=self._generator(avatar))

    def train(self, job: Job) -> None:
        from amg.pipeline import train_avatar

        train_avatar(self.layout, job.avatar, training_config(json.loads(job.options), self.avatar_cfg.precision))


def job_files(layout: Layout, job: Job) -> list[Path]:
    """What a job owns on disk: a render's uploaded speech and its output folder (an avatar's files are its own)."""
    if job.kind != "render" or not job.audio:
        return []
    return [layout.audio_dir(job.audio), layout.output_dir(job.audio, job.avatar)]


def render_outputs(layout: Layout, job: Job) -> dict[str, Path]:
    """What a render job's page offers for download, by the name GET /api/jobs/ID/outputs/NAME serves it under:
    the video, the one with the face refined (when the service renders with --enhance), and the speech as the
    service stored it (16 kHz mono WAV)."""
    return {
        "video": layout.generated_video(job.audio, job.avatar),
        "enhanced": layout.generated_superes(job.audio, job.avatar),
        "speech": uploaded_speech(layout, job.audio),
    }


def uploaded_speech(layout: Layout, audio: str) -> Path:
    """Where the service keeps an uploaded speech, normalised: the data layout's audio input `audio`, as a WAV."""
    return layout.audio_dir(audio) / f"{audio}.wav"


def job_outputs(layout: Layout, job: Job) -> list[str]:
    """The names of a render job's outputs that exist (see render_outputs)."""
    return [name for name, path in render_outputs(layout, job).items() if path.is_file()]


def delete_folders(folders) -> None:
    """Delete each folder; one that is a symbolic link is unlinked, and what it points to (which may be shared data
    outside the DATAROOT) is kept. A file a running job removes meanwhile is no error."""
    for folder in folders:
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)


def delete_job_files(layout: Layout, job: Job) -> None:
    delete_folders(job_files(layout, job))


class Worker:
    def __init__(self, store: JobStore, runner: Runner, layout: Layout, workers: int = 1, poll_s: float = 0.5):
        self.store, self.runner, self.layout = store, runner, layout
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"amg-worker-{i}", daemon=True) for i in range(workers)
        ]
        # Avatars of the jobs being run, including a cancelled job until it reaches its next progress report
        # and stops (the store forgets a job as soon as it is deleted).
        self._busy: dict[str, str] = {}
        self._busy_lock = threading.Lock()

    def start(self) -> None:
        requeued = self.store.requeue_interrupted()
        if requeued:
            log.info("Re-running %d job(s) interrupted by the last shutdown.", requeued)
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """A job was queued: don't wait for the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.run(job)

    def _sink(self, job: Job):
        last = [0.0]

        def sink(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL_S and done < total:
                return
            last[0] = now
            current = self.store.get(job.id)
            if current is None or current.status == "cancelled":
                raise Cancelled()
            low, high = STAGE_SHARES[job.kind].get(stage, (0.0, 1.0))
            self.store.set_progress(job.id, stage, low + (high - low) * done / max(total, 1))

        return sink

    def busy_avatars(self) -> set[str]:
        with self._busy_lock:
            return set(self._busy.values())

    def run(self, job: Job) -> None:
        with self._busy_lock:
            self._busy[job.id] = job.avatar
        try:
            with reporting_to(self._sink(job)):
                if job.kind == "render":
                    self.runner.render(job)
                else:
                    self.runner.train(job)
            self.store.finish(job.id, "done")
        except Cancelled:
            log.info("Job %s was cancelled.", job.id)
            delete_job_files(self.layout, job)
        except Exception as exc:  # a failed job must not stop the worker; the user reads the message
            log.exception("Job %s failed", job.id)
            message = without_path(str(exc), self.layout.root, "DATAROOT")  # clients see no server paths
            self.store.finish(job.id, "failed", message or type(exc).__name__)
        finally:
            with self._busy_lock:
                del self._busy[job.id]
