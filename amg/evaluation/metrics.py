"""Measures of generated against real frames beyond the image scores of amg.core.images: face boxes,
landmark distances and jitter, texture flicker (NumPy/OpenCV, no downloaded weights)."""

from __future__ import annotations

import numpy as np

from amg.core.images import Box, crop
from amg.tracking import topology


def lip_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mouth landmark distance per frame: the mean distance between corresponding lip points (x, y) of two
    (T, N, 2|3) landmark sets after removing each frame's lip centroid, so only the mouth's shape counts and
    not where the head is. NaN where either set is missing."""
    la, lb = a[:, topology.LIPS, :2], b[:, topology.LIPS, :2]
    la = la - la.mean(axis=1, keepdims=True)
    lb = lb - lb.mean(axis=1, keepdims=True)
    return np.linalg.norm(la - lb, axis=-1).mean(axis=1)


def landmark_jitter(landmarks: np.ndarray) -> float:
    """Mean length of the landmarks' second difference over time (x, y), in the landmarks' units per frame²:
    0 for motion at constant velocity, large for frame-to-frame shaking. Frames without landmarks (NaN) are
    skipped, with the triples that contain them."""
    accel = landmarks[2:, :, :2] - 2 * landmarks[1:-1, :, :2] + landmarks[:-2, :, :2]
    per_frame = np.linalg.norm(accel, axis=-1).mean(axis=1)
    per_frame = per_frame[np.isfinite(per_frame)]
    return float(per_frame.mean()) if len(per_frame) else float("nan")


def texture_flicker(previous: np.ndarray, current: np.ndarray, box: Box) -> float:
    """Mean absolute change (0-255) of the pixels in `box` from one frame to the next: texture that jumps
    (a warp whose source frame changes) reads high; the real frames' value is the target."""
    return float(np.abs(crop(current, box).astype(np.int16) - crop(previous, box).astype(np.int16)).mean())
