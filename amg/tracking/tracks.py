"""Stage 1's product: the smoothed per-frame tracks of an avatar video, as every later stage reads them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amg.core.fsutil import NpzRecord


@dataclass
class Tracks(NpzRecord):
    """All arrays have the frame count T first; positions are pixels of the size x size crop at 25 fps."""

    landmarks: np.ndarray  # (T, N, 3) smoothed face landmarks (x, y, depth)
    landmarks_raw: np.ndarray  # (T, N, 3) tracker output, gaps interpolated
    tracked: np.ndarray  # (T,) bool: the face was found on this frame (False: interpolated)
    rotation: np.ndarray  # (T, 3) head rotation vector (axis * angle, radians), neutral face → frame
    translation: np.ndarray  # (T, 3) pixels
    scale: np.ndarray  # (T,) pixels per neutral-face unit
    euler_deg: np.ndarray  # (T, 3) yaw, pitch, roll in degrees (0, 0, 0: facing the camera upright)
    expression: np.ndarray  # (T, K) coefficients of the avatar's PCA expression basis
    body: np.ndarray  # (T, 4, 3) shoulders and hips: x, y, visibility (smoothed, interpolated)
    window: np.ndarray  # (3,) crop window in source pixels: x0, y0, side
    fps: int
    size: int
    first_frame: int = 0  # the source video's frame of the first track (the face's span: amg.tracking.preprocess)

    @property
    def n_frames(self) -> int:
        return len(self.tracked)
