"""`amg batch DATAROOT MANIFEST.csv [--ray [ADDRESS]]`: many (speech, avatar) renders offline, through the
service's runners (in this process, or on Ray actors: amg.service.fleet), `workers` at a time.

The manifest is a CSV with a header: `audio` and `avatar` (names in DATAROOT, as for `amg run`), and optionally
`seed`, `blinks`, `blink_rate` and `pose`; UTF-8, or as Excel and Windows editors save it (with a byte-order
mark, or UTF-16). It is resumable: a row whose video is already there is skipped (videos appear atomically, so
one that is there is whole). Every speech and avatar it names is checked before the first render.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from amg.config import AvatarConfig, MotionOptions, RenderConfig
from amg.core.errors import AmgError
from amg.core.fsutil import read_user_text
from amg.core.layout import Layout, validate_name
from amg.service.jobs import Job
from amg.service.worker import PipelineRunner
from amg.stages import avatar_renders

log = logging.getLogger(__name__)
OPTION_COLUMNS = {"seed": int, "blinks": str, "blink_rate": float, "pose": str}
LISTED = 5  # names (or failed rows) an error line lists before it says how many more there are


@dataclass(frozen=True)
class BatchRow:
    line: int
    audio: str
    avatar: str
    options: MotionOptions


def read_manifest(path: Path) -> list[BatchRow]:
    if not path.is_file():
        raise AmgError(f"No manifest at {path}.")
    reader = csv.DictReader(io.StringIO(read_user_text(path), newline=""))
    try:
        missing = {"audio", "avatar"} - set(reader.fieldnames or [])
        if missing:
            raise AmgError(f"{path}: the header lacks the column(s) {', '.join(sorted(missing))}.")
        return [_row(row, reader.line_num, path) for row in reader]
    except csv.Error as exc:  # a cell past the csv module's limit (128 KB), say: on the line after those read
        raise AmgError(f"{path}, line {reader.line_num + 1}: {exc}") from None


def _row(row: dict, line: int, path: Path) -> BatchRow:
    try:
        options = {k: _cell(row, k, cast) for k, cast in OPTION_COLUMNS.items() if (row.get(k) or "").strip()}
        audio = validate_name((row["audio"] or "").strip(), "audio name")
        return BatchRow(
            line, audio, validate_name((row["avatar"] or "").strip(), "avatar name"), MotionOptions(**options)
        )
    except (ValueError, TypeError, AmgError) as exc:
        raise AmgError(f"{path}, line {line}: {exc}") from None


def _cell(row: dict, column: str, cast: type):
    try:
        return cast(row[column].strip())
    except ValueError:
        raise AmgError(f"column {column}: {row[column]!r} is not a number") from None


def listed(items: list[str], separator: str = ", ") -> str:
    """The first LISTED of `items`, and how many more there are: an error line stays one short line."""
    more = len(items) - LISTED
    return separator.join(items[:LISTED]) + (f" and {more} more" if more > 0 else "")


def render_job(row: BatchRow) -> Job:
    """The service's record of a render, for the runners (not stored: the manifest is the record)."""
    return Job(
        id=uuid.uuid4().hex,
        kind="render",
        avatar=row.avatar,
        audio=row.audio,
        status="running",
        stage="",
        progress=0.0,
        error="",
        created=time.time(),
        started=time.time(),
        finished=None,
        options=json.dumps(asdict(row.options)),
    )


def batch_runner(layout: Layout, workers: int, ray_address: str | None):
    """The runner `amg batch` renders with: this process's, or `workers` Ray actors (ray_address "" for a local
    Ray)."""
    if ray_address is None:
        return PipelineRunner(layout, AvatarConfig(), RenderConfig())
    from amg.service.fleet import RayRunner

    return RayRunner(layout, AvatarConfig(), RenderConfig(), workers, ray_address or None)


def render_manifest(layout: Layout, rows: list[BatchRow], workers: int = 1, runner=None) -> tuple[int, int]:
    """Render the rows not rendered yet, `workers` at a time, with `runner` (else this process's); returns
    (rendered, skipped). Raises AmgError naming the rows that failed, after the others are done."""
    todo = [r for r in rows if not layout.generated_video(r.audio, r.avatar).is_file()]
    # A missing speech file or avatar fails now, not after hours of rendering.
    for row in todo:
        layout.audio_source(row.audio)
    untrained = sorted({row.avatar for row in todo if not avatar_renders(layout, row.avatar)})
    if untrained:
        raise AmgError(
            f"{len(untrained)} avatar(s) of the manifest are not trained: {listed(untrained)} (`amg train DATAROOT "
            "NAME` trains one)."
        )
    if not todo:
        return 0, len(rows)
    if runner is None:
        runner = PipelineRunner(layout, AvatarConfig(), RenderConfig())
    failures = []

    def render(row: BatchRow) -> None:
        try:
            runner.render(render_job(row))
        except Exception as exc:  # one failed row must not stop the others
            log.error("line %d (%s → %s) failed: %s", row.line, row.audio, row.avatar, exc)
            failures.append(f"line {row.line}: {exc}")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(tqdm(pool.map(render, todo), total=len(todo), desc="Batch", unit="video"))
    if failures:
        raise AmgError(f"{len(failures)} of {len(todo)} renders failed (see the log above): {listed(failures, '; ')}")
    return len(todo), len(rows) - len(todo)
