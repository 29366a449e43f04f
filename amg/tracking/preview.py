"""tracking_preview.mp4: the tracks drawn over the crop, so a person can see at a glance that tracking worked."""

from __future__ import annotations

from typing import Iterable, Iterator

import cv2
import numpy as np

from amg.tracking import topology

_GREEN, _RED, _BLUE, _YELLOW, _WHITE = (60, 220, 60), (235, 60, 60), (60, 120, 255), (250, 210, 40), (255, 255, 255)


def draw_tracks(
    frames: Iterable[np.ndarray],
    landmarks: np.ndarray,
    rotations: np.ndarray,
    tracked: np.ndarray,
    body: np.ndarray,
) -> Iterator[np.ndarray]:
    """Yield each frame with landmarks (lips highlighted), head-pose axes and shoulder/hip lines drawn on it.

    Frames whose face was interpolated rather than tracked are labelled in red.
    """
    lips = np.asarray(topology.LIPS)
    for i, frame in enumerate(frames):
        canvas = np.ascontiguousarray(frame)
        size = canvas.shape[0]
        radius = max(1, size // 256)
        colour = _GREEN if tracked[i] else _RED
        for x, y in landmarks[i, :, :2].round().astype(int):
            cv2.circle(canvas, (x, y), radius, colour, -1, cv2.LINE_AA)
        for x, y in landmarks[i, lips, :2].round().astype(int):
            cv2.circle(canvas, (x, y), radius, _YELLOW, -1, cv2.LINE_AA)
        _draw_axes(canvas, landmarks[i, topology.NOSE_TIP, :2], rotations[i], size / 8)
        _draw_body(canvas, body[i], radius)
        if not tracked[i]:
            cv2.putText(canvas, "interpolated", (4, 14 * radius), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * radius, _RED, radius)
        yield canvas


def _draw_axes(canvas: np.ndarray, origin: np.ndarray, rotation: np.ndarray, length: float) -> None:
    """Head axes (x red, y green, z blue) under weak perspective: a rotated axis projects to its x, y."""
    start = tuple(origin.round().astype(int))
    for axis, colour in zip(rotation.T, (_RED, _GREEN, _BLUE)):
        end = tuple((origin + axis[:2] * length).round().astype(int))
        cv2.arrowedLine(canvas, start, end, colour, 2, cv2.LINE_AA, tipLength=0.2)


def _draw_body(canvas: np.ndarray, body: np.ndarray, radius: int) -> None:
    """Shoulder line, and shoulder-to-hip lines (hips are often below the crop; OpenCV clips them)."""
    if np.isnan(body).any():
        return
    ls, rs, lh, rh = (tuple(p[:2].round().astype(int)) for p in body)
    for a, b in ((ls, rs), (ls, lh), (rs, rh)):
        cv2.line(canvas, a, b, _WHITE, 2 * radius, cv2.LINE_AA)
