"""Stage 7: generated frames → the delivered mp4 (H.264 + AAC, the driving audio, exactly its length), marked as
synthetic: every frame watermarked and labelled (amg.media.marks), AMG's metadata tags and a signed C2PA
manifest in the file (amg.media.provenance)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from amg.config import FPS
from amg.core.fsutil import atomic_path
from amg.core.images import feather_mask, resized
from amg.core.progress import report
from amg.media import VideoWriter
from amg.media.marks import Marker
from amg.media.provenance import Provenance, sign_mp4
from amg.media.watermark import Payload


class FullFramePaster:
    """Pastes generated crops back into the source video's frame, over a backdrop of that size.

    The crop fades into the backdrop over a feathered border (a smoothstep ramp), so no seam shows where the
    generated crop meets the original pixels. `backdrop`: one frame for every call, or a callable giving the
    backdrop of each frame in turn (Backdrops: real frames that follow the generated body).
    """

    def __init__(self, backdrop: np.ndarray | Backdrops, window: np.ndarray, feather: float):
        self.backdrop: Callable[[], np.ndarray] = backdrop if callable(backdrop) else (lambda: backdrop)
        x0, y0, side = (int(v) for v in window)
        height, width = backdrop.shape[:2]
        # The window may reach past the frame's edges (the crop is then padded); paste only what is inside.
        self.dst = (slice(max(y0, 0), min(y0 + side, height)), slice(max(x0, 0), min(x0 + side, width)))
        self.src = (
            slice(self.dst[0].start - y0, self.dst[0].stop - y0),
            slice(self.dst[1].start - x0, self.dst[1].stop - x0),
        )
        self.side = side
        self.alpha = np.ascontiguousarray(feather_mask(side, feather * side)[self.src], dtype=np.float32)
        self.beta = 1 - self.alpha

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        big = np.ascontiguousarray(resized(crop, (self.side, self.side))[self.src])
        frame = self.backdrop().copy()
        # OpenCV's weighted blend in one pass: 8x NumPy's float round trip over a 720-px window.
        frame[self.dst] = cv2.blendLinear(big, np.ascontiguousarray(frame[self.dst]), self.alpha, self.beta)
        return frame


class Backdrops:
    """Real frames of the avatar video behind the generated crop, one per output frame, following the generated
    body: the bank frame whose shoulders and hips are nearest to the frame's generated ones (in crop pixels).

    Whole frames are chosen, never blended (a blend of two frames shows moving hands as ghosts), and a choice is
    held for at least HOLD frames and changed only for one at least SWITCH times as near, so the background and
    arms do not flicker between bank frames of nearly the same pose.
    """

    HOLD = 12  # about half a second at 25 fps
    SWITCH = 0.7

    def __init__(self, frames: list[np.ndarray], bank_body: np.ndarray, bodies: np.ndarray | Callable[[], np.ndarray]):
        if not frames:
            raise ValueError("Backdrops need at least one frame")
        self.frames, self.bank_body, self.bodies = frames, np.asarray(bank_body, np.float32), bodies
        self.shape = frames[0].shape
        self.index, self.current, self.held = 0, 0, self.HOLD

    def distances(self, body: np.ndarray) -> np.ndarray:
        """Mean distance of `body` (4, 3: x, y, visibility) to each bank frame's, over the points both see."""
        seen = (self.bank_body[..., 2] > 0.5) & np.isfinite(body[None, :, :2]).all(-1)
        gap = np.linalg.norm(self.bank_body[..., :2] - body[None, :, :2], axis=-1)
        return np.where(seen.any(-1), np.where(seen, gap, 0).sum(-1) / np.maximum(seen.sum(-1), 1), np.inf)

    def __call__(self) -> np.ndarray:
        """The next frame's backdrop. `bodies`: the generated body of every frame (an output made at once), or a
        callable giving the body of the frame being made (a stream, which keeps no history)."""
        if callable(self.bodies):
            body = self.bodies()
        else:
            body = self.bodies[min(self.index, len(self.bodies) - 1)]
            self.index += 1
        distance = self.distances(body)
        best = int(np.argmin(distance))
        if self.held >= self.HOLD and distance[best] < self.SWITCH * distance[self.current]:
            self.current, self.held = best, 0
        self.held += 1
        return self.frames[self.current]


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
