"""What an evaluation is asked (EvalOptions) and what it measured per sequence (SequenceResult): shared by the
measuring (evaluate.py) and the report (report.py), which import this and never each other's internals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amg.evaluation.sync import SyncResult


@dataclass
class EvalOptions:
    holdout: float = 0.15  # the video's tail the avatar never trains on
    audios: tuple[str, ...] = ()  # other speech to drive the avatar with (no ground truth)
    seed: int = 0  # sampling seed (head motion, blinks) of the cross-driven renders and the pose statistics
    max_lag: int = 15  # sync offsets searched, in frames either way (±0.6 s)
    chunk: int = 16
    engine: str = "auto"
    precision: str = "auto"  # of the rendering (amg.core.precision)
    enhance: bool = False  # also measure the face refiner's output (trained if missing)
    native_detail: bool = True  # the source's frame with render.native_detail (as `amg run` delivers it)


@dataclass
class SequenceResult:
    label: str
    # Per source: generated, copy and warp (the baselines), driving (the landmarks that drive them all), real
    # (held-out tail only).
    summaries: dict[str, dict[str, float]]
    opening: dict[str, np.ndarray]  # per source: mouth opening per frame, px at 256 (for the plots)
    eyes: dict[str, np.ndarray]  # per source: eye opening per frame (lid gap over eye width)
    sync: dict[str, SyncResult]
