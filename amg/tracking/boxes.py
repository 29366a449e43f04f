"""Boxes around parts of the face from its landmarks, at any image size: the mouth (losses, sharpness) and the
whole face (face-box scores), shared by training, inference and evaluation."""

from __future__ import annotations

import numpy as np

from amg.tracking import topology


def mouth_boxes(landmarks: np.ndarray, source_size: int, size: int, margin: float = 0.8) -> np.ndarray:
    """(T, N, 3) landmarks → (T, 4) int square boxes x0, y0, x1, y1 around the lips at the generator's size.

    The side is the mouth width times (1 + 2 * margin), so the box holds the lips, teeth and the skin that
    moves with them (chin, nasolabial folds).
    """
    points = landmarks[..., :2] * (size / source_size)
    centre = points[:, topology.LIPS].mean(axis=1)
    half = topology.mouth_width(points) * (0.5 + margin)
    half = np.maximum(half, 4.0)[:, None]
    boxes = np.concatenate([centre - half, centre + half], axis=1).round().astype(int)
    return np.clip(boxes, 0, size)


def face_boxes(landmarks: np.ndarray, source_size: int, size: int, margin: float = 0.05) -> np.ndarray:
    """(T, N, 2|3) landmarks in a `source_size` crop → (T, 4) int boxes x0, y0, x1, y1 around the face oval at
    `size`, widened by `margin` of the side on each side (so the jaw line and forehead edge are inside)."""
    points = landmarks[:, topology.FACE_OVAL, :2] * (size / source_size)
    low, high = points.min(axis=1), points.max(axis=1)
    pad = margin * (high - low)
    boxes = np.concatenate([low - pad, high + pad], axis=1).round().astype(int)
    return np.clip(boxes, 0, size)
