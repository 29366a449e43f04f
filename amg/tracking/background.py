"""The background plate: what the camera sees behind the person, for compositing generated frames."""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np


def sample_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """Evenly spaced frame indices (all frames if there are fewer than `n_samples`)."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_samples, n_frames)).round().astype(int))


def background_plate(
    frames: Iterable[np.ndarray],
    mattes: Iterable[np.ndarray],
    n_frames: int,
    n_samples: int,
    threshold: float,
) -> tuple[np.ndarray, float]:
    """Temporal median of the pixels outside the person matte; holes (never uncovered) are inpainted.

    The matte is dilated first because its soft edge (hair, shoulders) would otherwise bleed the person
    into the plate. Returns the RGB plate and the fraction of pixels that had to be inpainted.
    """
    wanted = set(sample_indices(n_frames, n_samples).tolist())
    stack = []
    for i, (frame, matte) in enumerate(zip(frames, mattes)):
        if i not in wanted:
            continue
        sample = frame.astype(np.float32)
        sample[_dilated_person_mask(matte[:, :, 0], threshold)] = np.inf
        stack.append(sample)
    plate = masked_median(np.stack(stack))
    holes = np.isnan(plate[:, :, 0])
    plate = np.nan_to_num(plate).round().astype(np.uint8)
    if holes.any():
        radius = max(3, plate.shape[0] // 64)
        plate = cv2.inpaint(plate, holes.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return plate, float(holes.mean())


def masked_median(stack: np.ndarray) -> np.ndarray:
    """Per-pixel median over axis 0 ignoring +inf entries; NaN where every entry is +inf.

    Sorting pushes the masked (+inf) samples to the end, so the median of the n valid ones is the mean of
    elements (n-1)//2 and n//2: one sort instead of np.nanmedian's much slower NaN-aware selection.
    """
    ordered = np.sort(stack, axis=0)
    n_valid = np.isfinite(ordered).sum(axis=0)
    lo = np.take_along_axis(ordered, np.maximum(n_valid - 1, 0)[None] // 2, axis=0)[0]
    hi = np.take_along_axis(ordered, (n_valid // 2)[None], axis=0)[0]
    return np.where(n_valid > 0, (lo + hi) / 2, np.nan)


def _dilated_person_mask(matte: np.ndarray, threshold: float) -> np.ndarray:
    person = (matte >= threshold * 255).astype(np.uint8)
    k = max(3, matte.shape[0] // 32) | 1
    return cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
