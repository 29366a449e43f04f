"""Image helpers several stages share: boxes, quality scores of uint8 RGB frames, and blend masks (NumPy/OpenCV,
no downloaded weights)."""

from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at (width, height): area-averaged when it shrinks (no aliasing), bicubic when it grows, itself
    when it has that size already.

    Bicubic, because a crop pasted back into its source frame grows by a few percent only, and bilinear
    interpolation blurs even that: obama_halfbody_34s's real 512-px crops pasted back into their 557-px window
    kept 0.58x the source face's Laplacian energy bilinearly, 0.76x bicubically (Lanczos 0.80 at 12x the
    time)."""
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    interp = cv2.INTER_AREA if width > size[0] else cv2.INTER_CUBIC
    return cv2.resize(image, tuple(size), interpolation=interp)


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


def frame_scores(frame: np.ndarray, real: np.ndarray, boxes: Mapping[str, Box] | None = None) -> dict[str, float]:
    """How close a uint8 frame is to the real one: PSNR and SSIM of the whole frame and inside each named box
    (`{"mouth": box}` → `mouth_psnr`, `mouth_ssim`). The one scorer of every report: training, refiner, eval."""
    scores = {"psnr": psnr(frame, real), "ssim": ssim(frame, real)}
    for name, box in (boxes or {}).items():
        scores[f"{name}_psnr"] = psnr(frame, real, box)
        scores[f"{name}_ssim"] = ssim(frame, real, box)
    return scores


def mean_frame_scores(
    frames: np.ndarray, reals: np.ndarray, boxes: Mapping[str, np.ndarray] | None = None
) -> dict[str, float]:
    """frame_scores of (T, H, W, 3) frames against the real ones, with (T, 4) boxes per name, averaged over the
    frames (a frame's PSNR, then the mean: as `amg eval` reports it)."""
    per_frame = [
        frame_scores(frame, real, {name: tuple(b[i]) for name, b in (boxes or {}).items()})
        for i, (frame, real) in enumerate(zip(frames, reals))
    ]
    return {key: float(np.mean([scores[key] for scores in per_frame])) for key in per_frame[0]}


def sharpness(image: np.ndarray, box: Box | None = None) -> float:
    """Variance of the Laplacian of the grey image inside `box`: high for crisp edges (teeth, lip borders),
    low for blur. Comparable only between images of the same content and size."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop(image, box)), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def mean_sharpness(images: np.ndarray, boxes: np.ndarray) -> float:
    """sharpness of (T, H, W, 3) images inside their (T, 4) boxes, averaged over the images."""
    return float(np.mean([sharpness(image, tuple(box)) for image, box in zip(images, boxes)]))


def feather_mask(side: int, ramp: float) -> np.ndarray:
    """(side, side) float32 opacity: 1 inside, rising from 0 at the edges over `ramp` pixels along a smoothstep
    (no kink where the ramp meets the inside, so no visible line there)."""
    edge = np.minimum(np.arange(side), np.arange(side)[::-1]) / max(ramp, 1.0)
    fade = np.clip(edge, 0, 1)
    fade = fade * fade * (3 - 2 * fade)
    return np.minimum(fade[:, None], fade[None, :]).astype(np.float32)
