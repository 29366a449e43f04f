"""What every generated frame carries before it leaves AMG (files, live streams, the service's results): the
invisible watermark (amg.media.watermark) and a visible label in a corner band, the original system's text by
default."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from amg.config import LABEL
from amg.core.constants import FPS
from amg.media.watermark import Embedder, Payload

# The label's text height as a share of the frame's height, and its least height in pixels (smaller is not
# legible); past the frame's width the text wraps onto more lines instead of shrinking.
LABEL_HEIGHT = 0.025
MIN_LABEL_PX = 8
BAND_OPACITY = 0.55  # of the dark band behind the text: the text reads on any picture, the picture shows through


class Marker:
    """Marks frames: the watermark of `payload`, then the `label` (None or "": no label). Frame `index` is
    shown at index / fps seconds (the watermark's strength follows the time)."""

    def __init__(self, payload: Payload, label: str | None = LABEL, fps: float = FPS):
        self.embed = Embedder(payload)
        self.label = label or None
        self.fps = fps

    def __call__(self, frame: np.ndarray, index: int) -> np.ndarray:
        marked = self.embed(frame, index / self.fps)
        if self.label is None:
            return marked
        return draw_label(marked, self.label)


def draw_label(frame: np.ndarray, text: str) -> np.ndarray:
    """`frame` (RGB uint8) with `text` in white on a translucent dark band in its bottom-left corner."""
    alpha, colour = _label_overlay(frame.shape[0], frame.shape[1], text)
    y0 = frame.shape[0] - alpha.shape[0]
    region = frame[y0:, : alpha.shape[1]].astype(np.float32)
    out = frame.copy()
    out[y0:, : alpha.shape[1]] = (region * (1 - alpha) + colour * alpha + 0.5).astype(np.uint8)
    return out


@cache
def _label_overlay(height: int, width: int, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(alpha (h, w, 1), colour (h, w, 3)) of the label band for frames of this size, drawn once."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    px = max(MIN_LABEL_PX, round(height * LABEL_HEIGHT))
    scale = cv2.getFontScaleFromHeight(font, px, 1)
    thickness = max(1, round(px / 14))
    lines = _wrapped(text, font, scale, thickness, width - 2 * _margin(px))
    line_height = round(px * 1.4)
    sizes = [cv2.getTextSize(line, font, scale, thickness)[0] for line in lines]
    band_w = min(width, max(w for w, _ in sizes) + 2 * _margin(px))
    band_h = min(height, line_height * len(lines) + _margin(px))
    text_mask = np.zeros((band_h, band_w), np.uint8)
    for i, line in enumerate(lines):
        baseline = _margin(px) // 2 + px + i * line_height
        cv2.putText(text_mask, line, (_margin(px), baseline), font, scale, 255, thickness, cv2.LINE_AA)
    ink = text_mask.astype(np.float32)[..., None] / 255
    # Over the picture: a black band at BAND_OPACITY, white text fully opaque on it, as one alpha and colour.
    alpha = BAND_OPACITY + (1 - BAND_OPACITY) * ink
    colour = np.broadcast_to(255 * ink / alpha, (band_h, band_w, 3)).astype(np.float32)
    return alpha, colour


def _margin(px: int) -> int:
    return max(2, px // 2)


def _wrapped(text: str, font: int, scale: float, thickness: int, width: int) -> list[str]:
    """`text` broken between words into lines no wider than `width` pixels (a single long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, font, scale, thickness)[0][0] <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]
