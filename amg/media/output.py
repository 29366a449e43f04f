"""Stage 7: generated crop frames → the delivered mp4 (H.264 + AAC, the driving audio, exactly its length)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from amg.config import FPS
from amg.core.images import feather_mask
from amg.core.progress import report
from amg.media import VideoWriter, iter_frames


class FullFramePaster:
    """Pastes generated crops back into the original frame size, over a still of the avatar video.

    The crop fades into the still over a feathered border (a smoothstep ramp), so no seam shows where the
    generated crop meets the original pixels.
    """

    def __init__(self, backdrop: np.ndarray, window: np.ndarray, feather: float):
        self.backdrop = backdrop
        x0, y0, side = (int(v) for v in window)
        height, width = backdrop.shape[:2]
        # The window may reach past the frame's edges (the crop is then padded); paste only what is inside.
        self.dst = (slice(max(y0, 0), min(y0 + side, height)), slice(max(x0, 0), min(x0 + side, width)))
        self.src = (
            slice(self.dst[0].start - y0, self.dst[0].stop - y0),
            slice(self.dst[1].start - x0, self.dst[1].stop - x0),
        )
        self.side = side
        self.alpha = feather_mask(side, feather * side)[self.src][..., None]

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        interp = cv2.INTER_LINEAR if crop.shape[0] < self.side else cv2.INTER_AREA
        big = cv2.resize(crop, (self.side, self.side), interpolation=interp)[self.src]
        frame = self.backdrop.copy()
        region = frame[self.dst].astype(np.float32)
        frame[self.dst] = (self.alpha * big + (1 - self.alpha) * region + 0.5).astype(np.uint8)
        return frame


def source_frame(video: Path, index: int) -> np.ndarray:
    """Frame `index` of `video` (at AMG's frame rate): the still a full-frame video is pasted over."""
    return next(islice(iter_frames(video, FPS), index, None))


def write_generated_video(
    path: Path, frames: Iterable[np.ndarray], n_frames: int, audio: np.ndarray, crf: int, desc: str = "Rendering"
) -> Path:
    """Encode `frames` (streamed) with `audio` (16 kHz mono) muxed in; appears atomically at `path`."""
    with VideoWriter(path, fps=FPS, audio=audio, crf=crf) as out:
        for i, frame in enumerate(tqdm(frames, total=n_frames, desc=desc, unit="frame")):
            out.write(frame)
            report("render", i + 1, n_frames)
    return path
