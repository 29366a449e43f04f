"""Measures of generated against real frames beyond the image scores of amg.core.images: face boxes,
landmark distances and jitter, texture flicker, and LPIPS with the weights that ship in a wheel."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from amg.core.images import Box, crop
from amg.gan.perceptual import ShiftTolerantLPIPS, perceptual_weights_path
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


class FaceLPIPS:
    """Shift-tolerant LPIPS (amg.gan.perceptual) of a box of two frames: how different they look to a network
    trained on human judgements, where a 1-px shift costs little and smeared teeth cost much. Both boxes are
    resized to SIDE pixels so frames of any size score alike."""

    SIDE = 96

    def __init__(self):
        self.net = ShiftTolerantLPIPS()

    @classmethod
    def if_available(cls) -> "FaceLPIPS | None":
        """The measure, or None where the stlpips-pytorch weights are not installed (the column is left out)."""
        return cls() if perceptual_weights_path() is not None else None

    def __call__(self, frame: np.ndarray, real: np.ndarray, box: Box) -> float:
        pair = [
            cv2.resize(np.ascontiguousarray(crop(x, box)), (self.SIDE, self.SIDE), interpolation=cv2.INTER_AREA)
            for x in (frame, real)
        ]
        x, y = (torch.from_numpy(p).permute(2, 0, 1)[None].float() / 127.5 - 1 for p in pair)
        with torch.no_grad():
            return float(self.net(x, y)[0])
