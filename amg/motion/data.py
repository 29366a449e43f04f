"""Training data of the motion stage: an avatar video's audio features aligned with its tracks, frame by frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amg.audio.features import AudioFeatures, features_for_video
from amg.common.split import held_out_split
from amg.config import AudioFeatureConfig
from amg.errors import AmgError
from amg.layout import Layout
from amg.tracking.fitting import ExpressionModel
from amg.tracking.tracks import Tracks


@dataclass
class MotionData:
    """One avatar video, every array with T rows (25 fps)."""

    features: AudioFeatures
    tracks: Tracks
    face_model: ExpressionModel

    @property
    def n_frames(self) -> int:
        return self.tracks.n_frames

    def split(self, holdout: float) -> tuple[slice, slice]:
        """Train on the first (1 - holdout) of the video, validate on its tail (see held_out_split)."""
        return held_out_split(self.n_frames, holdout)


def load_motion_data(layout: Layout, video_name: str, feature_cfg: AudioFeatureConfig) -> MotionData:
    tracks_path = layout.tracks(video_name)
    if not tracks_path.is_file():
        raise AmgError(f"Video {video_name!r} is not preprocessed yet: run `amg preprocess` on it first.")
    tracks = Tracks.load(tracks_path)
    features = features_for_video(layout, video_name, feature_cfg, tracks.n_frames)
    return MotionData(features, tracks, ExpressionModel.load(layout.face_model(video_name)))


def window_starts(rng: np.random.Generator, n: int, length: int, span: slice) -> np.ndarray:
    """`n` random start frames of windows of `length` frames lying inside `span`."""
    last = span.stop - length
    if last < span.start:
        raise AmgError(f"Too little training video: need at least {length} frames, have {span.stop - span.start}.")
    return rng.integers(span.start, last + 1, size=n)


def gather_windows(array: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(B, length, ...) windows of `array` (T, ...) starting at `starts`."""
    return array[starts[:, None] + np.arange(length)[None, :]]
