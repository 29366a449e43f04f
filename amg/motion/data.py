"""Training data of the motion stage: an avatar video's audio features aligned with its tracks, frame by frame."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from amg.audio.features import SAMPLE_RATE, AudioFeatures, features_for_video
from amg.config import AudioFeatureConfig
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.media import load_audio
from amg.tracking.fitting import ExpressionModel
from amg.tracking.tracks import Tracks


@dataclass
class MotionData:
    """One avatar video, every array with T rows (25 fps), and the speech they were computed from."""

    features: AudioFeatures
    tracks: Tracks
    face_model: ExpressionModel
    feature_cfg: AudioFeatureConfig
    audio_path: Path
    holdout: float  # the video's tail no motion model trains on

    @cached_property
    def audio(self) -> np.ndarray:
        """The speech, 16 kHz mono: read only by the training that asks for it (speed perturbation)."""
        return load_audio(self.audio_path, SAMPLE_RATE)

    @property
    def n_frames(self) -> int:
        return self.tracks.n_frames

    @property
    def run_record(self) -> dict[str, float | str]:
        """The record saved with each motion network (amg.core.checkpoints.TrainingRun): they train in fp32."""
        return {"holdout": self.holdout, "precision": "fp32"}

    @property
    def split(self) -> tuple[slice, slice]:
        """Train on the first (1 - holdout) of the video, validate on its tail (see held_out_split)."""
        return held_out_split(self.n_frames, self.holdout)


def load_motion_data(layout: Layout, video_name: str, feature_cfg: AudioFeatureConfig, holdout: float) -> MotionData:
    tracks_path = layout.tracks(video_name)
    if not tracks_path.is_file():
        raise AmgError(f"Video {video_name!r} is not preprocessed yet: run `amg preprocess` on it first.")
    tracks = Tracks.load(tracks_path)
    features = features_for_video(layout, video_name, feature_cfg, tracks.n_frames)
    face_model = ExpressionModel.load(layout.face_model(video_name))
    return MotionData(features, tracks, face_model, feature_cfg, layout.audio_wav(video_name), holdout)


def window_starts(rng: np.random.Generator, n: int, length: int, spans: slice | Sequence[slice]) -> np.ndarray:
    """`n` random start frames of windows of `length` frames, each lying inside one of `spans` (a window is as
    likely to start at any frame that leaves room for it)."""
    spans = [spans] if isinstance(spans, slice) else list(spans)
    room = np.array([max(span.stop - length - span.start + 1, 0) for span in spans])
    if room[0] <= 0:
        first = spans[0]
        raise AmgError(f"Too little training video: need at least {length} frames, have {first.stop - first.start}.")
    if len(spans) == 1:
        return rng.integers(spans[0].start, spans[0].start + room[0], size=n)
    ends = np.cumsum(room)  # the spans' starting room laid end to end: draw a place in it, then find its span
    offsets = rng.integers(0, ends[-1], size=n)
    which = np.searchsorted(ends, offsets, side="right")
    return np.array([span.start for span in spans])[which] + offsets - (ends - room)[which]


def gather_windows(array: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(B, length, ...) windows of `array` (T, ...) starting at `starts`."""
    return array[starts[:, None] + np.arange(length)[None, :]]
