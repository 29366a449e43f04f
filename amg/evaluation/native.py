"""The held-out tail in the avatar video's own frame and pixels, as `amg run` delivers it (render.framing = source),
against the real source frames: what a viewer of an HD or half-body video sees, where the crop metrics of
`amg eval` see the face at the generator's size only.

Three ways to fill the source frame are measured by the same instruments:

    generated      the generated crop over real frames that follow the generated body (amg.tracking.framing),
                   with the face box's detail at the source's resolution where the render adds it (amg.gan.native)
    over_still     the generated crop enlarged over one still frame, without that detail: the first
                   source-framing path, and what most talking-head tools deliver
    nearest_frame  the training frame whose face is nearest (the copy baseline), whole, at its own resolution

Scores, in source pixels: PSNR and SSIM of the whole frame and of the face box; LPIPS of the face box; the
sharpness (variance of the Laplacian) of the face and mouth boxes as a ratio to the real frames'; and the seam:
the gradient energy in the band where the crop fades into its backdrop, as a ratio to the same band of the real
frames (a doubled shoulder edge or a ghosted hand reads high, a blurred band low).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterable

import cv2
import numpy as np

from amg.config import FPS
from amg.core import images
from amg.core.layout import Layout
from amg.core.training import save_sample_grid
from amg.evaluation.metrics import FaceLPIPS
from amg.media import iter_frames, pick_frames
from amg.media.output import FullFramePaster
from amg.tracking.boxes import face_boxes, mouth_boxes
from amg.tracking.framing import SourceFraming
from amg.tracking.tracks import Tracks

METHODS = ("generated", "over_still", "nearest_frame")
NATIVE_PICTURE = "native_face.jpg"  # the middle held-out frame's face at 1:1: real | each method
# The seam band: where the paste's opacity is neither the backdrop's nor the crop's.
SEAM_ALPHA = (0.02, 0.98)


@dataclass
class NativeFrame:
    """One held-out frame's boxes in source pixels (x0, y0, x1, y1)."""

    face: images.Box
    mouth: images.Box


def to_source_boxes(boxes: np.ndarray, window: np.ndarray, size: int, frame: tuple[int, int]) -> np.ndarray:
    """(T, 4) boxes in pixels of a `size` crop → the same boxes in the source frame (width, height)."""
    x0, y0, side = (float(v) for v in window)
    scaled = boxes.astype(np.float64) * (side / size) + np.array([x0, y0, x0, y0])
    limits = np.array([frame[0], frame[1], frame[0], frame[1]])
    return np.clip(np.round(scaled), 0, limits).astype(int)


def seam_band(paster: FullFramePaster, frame: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels of the source frame where the pasted crop fades into its backdrop, leaving out
    the frame's own edges (where the window meets the frame there is no seam)."""
    band = np.zeros((frame[1], frame[0]), bool)
    low, high = SEAM_ALPHA
    band[paster.dst] = (paster.alpha > low) & (paster.alpha < high)
    band[:2], band[-2:], band[:, :2], band[:, -2:] = False, False, False, False
    return band


def gradient_energy(frame: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared Sobel gradient of the grey frame inside `mask`."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    return float((gx * gx + gy * gy)[mask].mean()) if mask.any() else float("nan")


class NativeScorer:
    """Accumulates each method's scores over the held-out frames, against the real source frames."""

    def __init__(self, band: np.ndarray, lpips: FaceLPIPS | None):
        self.band, self.lpips = band, lpips
        self.values: dict[str, dict[str, list[float]]] = {}

    def add_real(self, real: np.ndarray, boxes: NativeFrame) -> None:
        self._append("real", self._own(real, boxes))

    def add(self, method: str, frame: np.ndarray, real: np.ndarray, boxes: NativeFrame) -> None:
        scores = images.frame_scores(frame, real, {"face": boxes.face}) | self._own(frame, boxes)
        if self.lpips is not None:
            scores["face_lpips"] = self.lpips(frame, real, boxes.face)
        self._append(method, scores)

    def _own(self, frame: np.ndarray, boxes: NativeFrame) -> dict[str, float]:
        """The scores a frame has without a reference: its sharpness and the seam band's gradient energy."""
        return {
            "face_sharpness": images.sharpness(frame, boxes.face),
            "mouth_sharpness": images.sharpness(frame, boxes.mouth),
            "seam_energy": gradient_energy(frame, self.band),
        }

    def _append(self, method: str, scores: dict[str, float]) -> None:
        for key, value in scores.items():
            self.values.setdefault(method, {}).setdefault(key, []).append(value)

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean scores per method; sharpness and seam energy also as ratios to the real frames' own."""
        means = {m: {k: float(np.nanmean(v)) for k, v in scores.items()} for m, scores in self.values.items()}
        real = means.pop("real")
        for scores in means.values():
            for key in ("face_sharpness", "mouth_sharpness", "seam_energy"):
                scores[f"{key}_vs_real"] = scores[key] / real[key] if real[key] > 0 else float("nan")
        means["real"] = real
        return means


def native_scores(
    layout: Layout,
    name: str,
    tracks: Tracks,
    start: int,
    holdout: float,
    feather: float,
    crops: Iterable[tuple[np.ndarray, np.ndarray]],
    nearest: np.ndarray,
) -> dict | None:
    """Scores of the held-out frames `start`.. in the source's frame: `crops` are the generated crops of those
    frames, each as rendered and without the source-resolution detail (the baseline over a still frame: the
    crop as it was enlarged), `nearest` the copy baseline's training frame for each. None where the crop is the
    whole frame (a 256-px source): the crop metrics are then the native ones."""
    framing = SourceFraming.of(layout, name, holdout, feather)
    if not framing.frames:
        return None
    source = layout.video_source(name)
    first, held = tracks.first_frame, np.arange(start, tracks.n_frames)
    landmarks, size = tracks.landmarks[held], tracks.size
    faces = to_source_boxes(face_boxes(landmarks, size, size), tracks.window, size, framing.size)
    mouths = to_source_boxes(mouth_boxes(landmarks, size, size), tracks.window, size, framing.size)
    paste = framing.paster(tracks.body[held])
    still = FullFramePaster(framing.frames[0], framing.window, feather)
    scorer = NativeScorer(seam_band(still, framing.size), FaceLPIPS.if_available())
    copies = pick_frames(iter_frames(source, FPS), nearest + first)
    reals = islice(iter_frames(source, FPS), first + start, first + tracks.n_frames)
    shown = len(held) // 2
    for i, ((crop, bare), real) in enumerate(zip(crops, reals)):
        boxes = NativeFrame(tuple(faces[i]), tuple(mouths[i]))
        frames = {"real": real, "generated": paste(crop), "over_still": still(bare)}
        frames["nearest_frame"] = copies[int(nearest[i]) + first]
        scorer.add_real(real, boxes)
        for method in METHODS:
            scorer.add(method, frames[method], real, boxes)
        if i == shown:
            save_sample_grid(layout.eval_dir(name) / NATIVE_PICTURE, face_strip(frames, boxes.face))
    return {"size": list(framing.size), "window": [int(v) for v in framing.window], **scorer.summary()}


def face_strip(frames: dict[str, np.ndarray], face: images.Box) -> np.ndarray:
    """The region around the face box, at the source's own pixels, of each frame side by side (real first)."""
    x0, y0, x1, y1 = face
    pad_x, pad_y = (x1 - x0) // 3, (y1 - y0) // 3
    height, width = frames["real"].shape[:2]
    region = (max(x0 - pad_x, 0), max(y0 - pad_y, 0), min(x1 + pad_x, width), min(y1 + pad_y, height))
    return np.concatenate([images.crop(frames[m], region) for m in ("real", *METHODS)], axis=1)
