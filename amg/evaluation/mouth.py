"""What a speaking mouth shows, per frame, by instruments a mumbling mouth cannot fool: whether teeth are visible,
how blurred the mouth is (no reference needed), and how its opening compares with the person's own.

PSNR and SSIM reward a mouth that barely moves (a half-open average is close to every real frame); these do not:
a closed or smeared mouth shows no teeth, a soft one scores a high blur, a small one an opening ratio under 1.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.measure import blur_effect

from amg.core.images import Box, crop
from amg.tracking.topology import LIPS_INNER

# A frame shows teeth when at least this share of its inner mouth is teeth-coloured: bright and unsaturated.
# Looked at on four shared clips' real mouths: visible teeth score 0.25-0.65, closed lips 0-0.05, parted lips
# with a lit lower lip up to about 0.18.
TEETH_SHARE = 0.2
# Teeth-coloured: brighter than this share of the mouth box's brightest tenth (lit teeth are its brightest
# pixels; relative, so exposure and skin tone do not move it) and less saturated than the box's median pixel.
TEETH_BRIGHTNESS = 0.75
# An inner mouth smaller than this many pixels is closed: there is nothing to see in it.
MIN_INNER_PIXELS = 6


def inner_mouth_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels inside the inner lip ring of one frame's (N, 2 or 3) landmarks in pixels."""
    mask = np.zeros(shape, np.uint8)
    ring = np.round(landmarks[LIPS_INNER, :2]).astype(np.int32)
    cv2.fillPoly(mask, [ring], 1)
    return mask.astype(bool)


def teeth_share(frame: np.ndarray, landmarks: np.ndarray, mouth: Box) -> float:
    """Share of the inner mouth's pixels that are teeth-coloured (0 for a closed mouth, NaN without landmarks)."""
    if not np.isfinite(landmarks).all():
        return float("nan")
    inner = inner_mouth_mask(landmarks, frame.shape[:2])
    if inner.sum() < MIN_INNER_PIXELS:
        return 0.0
    hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV).astype(np.float32)
    box = crop(hsv, mouth)
    bright = TEETH_BRIGHTNESS * np.percentile(box[..., 2], 90)
    pale = np.median(box[..., 1])
    teeth = (hsv[..., 2] >= bright) & (hsv[..., 1] <= pale)
    return float(teeth[inner].mean())


def mouth_blur(frame: np.ndarray, mouth: Box) -> float:
    """The blur effect of the mouth box (Crété-Roffet et al. 2007, scikit-image): 0 for sharp, towards 1 for
    blurred; no reference needed, so it also scores cross-driven frames."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop(frame, mouth)), cv2.COLOR_RGB2GRAY)
    return float(blur_effect(grey)) if min(grey.shape) >= 11 else float("nan")


def teeth_frames(shares: np.ndarray) -> float:
    """The fraction of frames (with a face) that show teeth."""
    found = np.isfinite(shares)
    return float((shares[found] >= TEETH_SHARE).mean()) if found.any() else float("nan")


def ratio(ours: float, real: float) -> float:
    """ours / real, NaN where the real value is 0 or unknown."""
    return ours / real if np.isfinite(real) and real > 0 else float("nan")
