"""Metrics of generated against real frames: image quality on uint8 RGB frames and landmark measures, all
NumPy/OpenCV (no downloaded weights)."""

from __future__ import annotations

import cv2
import numpy as np

from amg.tracking import topology

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def crop(images: np.ndarray, box: Box | None) -> np.ndarray:
    """(..., H, W, C) → the box's pixels (the whole image for None)."""
    if box is None:
        return images
    x0, y0, x1, y1 = box
    return images[..., y0:y1, x0:x1, :]


def psnr(a: np.ndarray, b: np.ndarray, box: Box | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images or stacks (inf when identical)."""
    mse = np.mean((crop(a, box).astype(np.float64) - crop(b, box).astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, box: Box | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004: Gaussian window σ 1.5, K1 0.01, K2 0.03) over the
    channels of two uint8 images (H, W, C) or stacks (T, H, W, C)."""
    a, b = crop(a, box), crop(b, box)
    if a.ndim == 4:
        return float(np.mean([ssim(x, y) for x, y in zip(a, b)]))
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def face_boxes(landmarks: np.ndarray, source_size: int, size: int, margin: float = 0.05) -> np.ndarray:
    """(T, N, 2|3) landmarks in a `source_size` crop → (T, 4) int boxes x0, y0, x1, y1 around the face oval at
    `size`, widened by `margin` of the side on each side (so the jaw line and forehead edge are inside)."""
    points = landmarks[:, topology.FACE_OVAL, :2] * (size / source_size)
    low, high = points.min(axis=1), points.max(axis=1)
    pad = margin * (high - low)
    boxes = np.concatenate([low - pad, high + pad], axis=1).round().astype(int)
    return np.clip(boxes, 0, size)


def sharpness(image: np.ndarray, box: Box | None = None) -> float:
    """Variance of the Laplacian of the grey image inside `box`: high for crisp edges (teeth, lip borders),
    low for blur. Comparable only between images of the same content and size."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop(image, box)), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


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
