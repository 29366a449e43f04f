"""Progress of long stages, for whoever watches besides the terminal's bars (the HTTP service's job status).

Stages call `report(key, done, total)` where they advance their progress bar, the key being a stage's name
(STAGE_NAMES) or `name.part` for one of several bars of a stage (`audio.embedding`), never a display label; a
caller that wants to know installs a sink with `reporting_to(sink)` around the work. The sink is context-local, so each worker thread of
the service sees only its own job's progress, and code run without one pays a dictionary lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

# The pipeline's stages in order, as progress keys (the trained ones are amg.stages.STAGES).
STAGE_NAMES = ("preprocess", "audio", "motion", "gan", "enhance", "render")

Sink = Callable[[str, int, int], None]
_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("amg_progress_sink", default=None)


def report(stage: str, done: int, total: int) -> None:
    """`done` of `total` units of `stage` are finished. A sink may raise to abort the work (a cancelled job)."""
    sink = _sink.get()
    if sink is not None:
        sink(stage, done, total)


@contextlib.contextmanager
def reporting_to(sink: Sink) -> Iterator[None]:
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
