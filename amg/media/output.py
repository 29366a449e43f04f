"""Stage 7: generated frames → the delivered mp4 (H.264 + AAC, the driving audio, exactly its length), marked as
synthetic: every frame watermarked and labelled (amg.media.marks), AMG's metadata tags and a signed C2PA
manifest in the file (amg.media.provenance)."""

from __future__ import annotations

import contextlib
import shutil
from itertools import islice
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from amg.config import FPS
from amg.core.fsutil import atomic_path
from amg.core.images import feather_mask
from amg.core.progress import report
from amg.media import VideoWriter, iter_frames
from amg.media.marks import Marker
from amg.media.provenance import Provenance, sign_mp4
from amg.media.watermark import Payload


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


class GeneratedVideoWriter:
    """An mp4 of generated frames as AMG delivers it: each frame marked (watermark, then `label` unless None),
    AMG's metadata tags, and a signed C2PA manifest. Appears at `path` only when complete (atomically)."""

    def __init__(self, path: Path, audio: np.ndarray, crf: int, provenance: Provenance, label: str | None):
        self.path, self.audio, self.crf, self.provenance = Path(path), audio, crf, provenance
        self.marker = Marker(Payload.of(provenance.avatar, provenance.render_id), label)
        self.index = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> GeneratedVideoWriter:
        self._final = self._stack.enter_context(atomic_path(self.path))
        self._unsigned = self._final.with_name(self._final.stem + ".unsigned.mp4")
        self._stack.callback(self._unsigned.unlink, missing_ok=True)
        self._stack.push(self._sign_on_success)
        metadata = self.provenance.tags()
        self._writer = self._stack.enter_context(
            VideoWriter(self._unsigned, FPS, self.audio, crf=self.crf, metadata=metadata)
        )
        return self

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(self.marker(frame, self.index))
        self.index += 1

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)

    def _sign_on_success(self, exc_type, exc, tb) -> None:
        """After the encoder closed the unsigned file: the signed copy becomes the output (the unsigned one where
        c2pa-python is missing)."""
        if exc_type is None and not sign_mp4(self._unsigned, self._final, self.provenance, self.path.name):
            shutil.copyfile(self._unsigned, self._final)


def write_generated_video(
    path: Path,
    frames: Iterable[np.ndarray],
    n_frames: int,
    audio: np.ndarray,
    crf: int,
    provenance: Provenance,
    label: str | None,
    desc: str = "Rendering",
) -> Path:
    """Encode `frames` (streamed) with `audio` (16 kHz mono) muxed in, marked; appears atomically at `path`."""
    with GeneratedVideoWriter(path, audio, crf, provenance, label) as out:
        for i, frame in enumerate(tqdm(frames, total=n_frames, desc=desc, unit="frame")):
            out.write(frame)
            report("render", i + 1, n_frames)
    return path
