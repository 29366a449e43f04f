"""The motion a renderer draws: per frame expression, head pose, body and face landmarks, from speech or from
the avatar's own video. What stage 3 hands to stages 4–6."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amg.core.fsutil import NpzRecord
from amg.tracking.tracks import Tracks


@dataclass
class MotionTracks(NpzRecord):
    """Predicted motion for one driving audio, in the avatar's crop pixels at 25 fps: the renderer's input."""

    expression: np.ndarray  # (T, K)
    rotation: np.ndarray  # (T, 3) rotation vectors
    translation: np.ndarray  # (T, 3)
    scale: np.ndarray  # (T,)
    body: np.ndarray  # (T, 4, 2) shoulders and hips
    landmarks: np.ndarray  # (T, N, 3) face landmarks reconstructed from pose + expression
    vad: np.ndarray  # (T,) speech probability of the driving audio
    size: int

    @property
    def n_frames(self) -> int:
        return len(self.expression)

    PER_FRAME = ("expression", "rotation", "translation", "scale", "body", "landmarks", "vad")

    def take(self, frames: slice | np.ndarray) -> MotionTracks:
        return MotionTracks(**{k: getattr(self, k)[frames] for k in self.PER_FRAME}, size=self.size)

    @classmethod
    def concatenate(cls, parts: list[MotionTracks]) -> MotionTracks:
        """The frames of `parts` one after the other (a stream's chunks)."""
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.PER_FRAME}, size=parts[0].size)


def tracked_motion(
    tracks: Tracks, frames: slice, landmarks: np.ndarray | None = None, expression: np.ndarray | None = None
) -> MotionTracks:
    """The motion of a stretch of the avatar's own video: its tracked pose and body, with its tracked landmarks
    and expressions unless others are given (say, predicted from its speech)."""
    return MotionTracks(
        expression=(tracks.expression[frames] if expression is None else expression).astype(np.float32),
        rotation=tracks.rotation[frames],
        translation=tracks.translation[frames],
        scale=tracks.scale[frames],
        body=tracks.body[frames],
        landmarks=(tracks.landmarks[frames] if landmarks is None else landmarks).astype(np.float32),
        vad=np.ones(len(tracks.scale[frames]), np.float32),
        size=tracks.size,
    )
