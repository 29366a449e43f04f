"""The face at its source's own pixels where the crop window holds more of them than the generator's crop (a
1080p video's window of 700 px generated at the CPU's 512): enlarged to the window, the generated crop is as soft
as a 512-px picture. What it lacks is the detail finer than the crop's pixels, and the avatar's own frames have
it: the candidates the generator blends (amg.gan.candidates), warped by the same maps at the window's
resolution, give each pixel the band between the crop's resolution and the source's, taken from the candidate
whose coarser picture agrees with the generated one there. Where none agrees, the generator made something no
candidate shows (a mouth opening differently) and no detail is added.

Only each frame's face box (with a margin for the hair, ears and jaw) gets the detail: it is where a viewer looks
and where the crop's softness shows, and it bounds the memory the bank's frames take at the source's resolution
(each keeps its own face's box) and the time the warps take.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from amg.conditioning.warp import fixed_point, remap
from amg.core.images import resized
from amg.core.layout import Layout
from amg.gan.references import AvatarReferences
from amg.media import FrameBank
from amg.tracking import topology
from amg.tracking.tracks import Tracks

# The window must hold at least this many times the crop's pixels per side: under it the enlargement is a few
# percent and the bicubic paste keeps what little there is (a 557-px window of a 512 crop kept 0.96x of the face's
# sharpness after the window was narrowed to the crop: amg.tracking.scan.fitted_to_crop).
MIN_GAIN = 1.1
# Each frame's detail covers its face's box widened by this share of the box's larger side on each side (hair,
# ears, the jaw line and the neck), fading in over RAMP of it (no edge where the detail starts); each bank frame
# keeps its own face box's pixels, a further share of the window's side wider (warps move pixels by up to about
# a head's motion between frames of similar pose).
FACE_MARGIN = 0.2
SOURCE_MARGIN = 0.05
RAMP = 0.1
# The bank frames' pixels at the source's resolution take at most this much memory: past it, the frames between
# kept ones add no detail when picked.
BANK_BYTES = 768 << 20
# A candidate's detail counts where its coarse picture is within a few levels of the generated one, judged over
# a few of the crop's pixels (its own noise and a pixel of misalignment are not disagreement): the nearest
# candidate takes all but a sliver (SELECT_LEVELS: a softer choice averages candidates' textures, which are never
# aligned to the pixel, into a blur), and all of it fades as the nearest differs by about AGREE_LEVELS, along
# exp(-(difference / AGREE_LEVELS)^AGREE_POWER): flat where the generated face is the candidates' face (a trained
# generator's crop differs from them by 10-20 levels there) and steep past it (a mouth opened otherwise).
# docs/decisions.md, "The face box at the source's resolution".
AGREE_RADIUS = 1.5  # in the crop's pixels
SELECT_LEVELS = 0.3
AGREE_LEVELS = 24.0
AGREE_POWER = 4


def bicubic_compensation(phases: int = 32) -> np.ndarray:
    """A 5-tap symmetric filter (sums to 1) that undoes, on average over sub-pixel positions, what OpenCV's bicubic
    resampling (Keys' kernel, a = -0.75) takes from the finest detail: a warp that lands half-way between pixels
    keeps about a quarter of the amplitude near the Nyquist frequency, one on the pixel all of it, and the warps'
    positions are spread over both. Fitted by least squares to the inverse of the kernel's root-mean-square
    response over those positions, weighted to the frequencies above 0.3 of the Nyquist frequency."""
    taps = np.arange(-1, 3)
    x = np.abs(taps[None, :] - (np.arange(phases) / phases)[:, None])
    kernel = np.where(x < 1, 1.25 * x**3 - 2.25 * x**2 + 1, np.where(x < 2, -0.75 * (x**3 - 5 * x**2 + 8 * x - 4), 0))
    w = np.linspace(0, 0.95, 96) * np.pi
    rms = np.sqrt((np.abs(np.exp(-1j * np.outer(w, taps)) @ kernel.T) ** 2).mean(axis=1))
    weight = np.where(w > 0.3 * np.pi, 1.0, 0.3)
    # The filter 1 + c1 (2 cos w - 2) + c2 (2 cos 2w - 2): unit gain at w = 0, linear in (c1, c2).
    basis = np.stack([2 * np.cos(w) - 2, 2 * np.cos(2 * w) - 2], axis=1) * rms[:, None]
    c1, c2 = np.linalg.lstsq(basis * weight[:, None], (1 - rms) * weight, rcond=None)[0]
    return np.array([c2, c1, 1 - 2 * (c1 + c2), c1, c2], np.float32)


BICUBIC_COMPENSATION = bicubic_compensation()


@dataclass(frozen=True)
class Box:
    """x0, y0, x1, y1 in window pixels at the source's resolution (x1, y1 excluded)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def widened(self, margin: float, limit: int) -> Box:
        """Each side moved out by `margin` pixels, kept inside [0, limit)."""
        m = round(margin)
        return Box(max(self.x0 - m, 0), max(self.y0 - m, 0), min(self.x1 + m, limit), min(self.y1 + m, limit))


@dataclass
class PreparedDetail:
    """The candidates of n frames warped at the source's resolution, each over its frame's face box."""

    boxes: list[Box]
    bands: list[np.ndarray]  # per frame (K, h, w, 3) float32: each candidate's detail finer than the crop's pixels
    coarse: list[np.ndarray]  # per frame (K, h, w) float32: its brightness without that detail (what is compared)
    known: np.ndarray  # (n, K) bool: its frame is in the bank at the source's resolution


class NativeDetail:
    """The bank's frames around their faces at the source's resolution, each split once into its coarse picture
    and its detail (kept for the few frames recently picked: picks change rarely)."""

    CACHED = 16

    def __init__(self, crops: dict[int, tuple[Box, np.ndarray]], side: int, size: int, landmark_size: int):
        self.crops, self.side, self.size, self.landmark_size = crops, side, size, landmark_size
        self.parts: dict[int, tuple[Box, np.ndarray, np.ndarray]] = {}
        self.parts_lock = threading.Lock()

    @classmethod
    def bank(cls, layout: Layout, name: str, refs: AvatarReferences) -> FrameBank | None:
        """For avatar `name` and its candidate bank: the frames to decode (each bank frame's face region at the
        source's resolution, amg.media.make_banks) and how they become a NativeDetail; None where the window is
        within MIN_GAIN of the crop (nothing finer to give)."""
        tracks = Tracks.load(layout.tracks(name))
        x0, y0, side = (int(v) for v in tracks.window)
        size = refs.frames.shape[1]
        if side < MIN_GAIN * size:
            return None
        boxes = face_boxes(refs.landmarks, refs.source_size, side, FACE_MARGIN, SOURCE_MARGIN * side)
        area = np.mean([b.shape[0] * b.shape[1] for b in boxes])
        count = min(len(boxes), max(int(BANK_BYTES // (area * 3)), 1))
        kept = np.unique(np.linspace(0, len(boxes) - 1, count).round().astype(int))
        frames = refs.index[kept] + tracks.first_frame
        window = Box(x0, y0, x0 + side, y0 + side)
        entries = dict(zip(frames.tolist(), kept.tolist()))

        def make(picked: dict[int, np.ndarray]) -> NativeDetail:
            crops = {entries[f]: (boxes[entries[f]], crop) for f, crop in picked.items()}
            return cls(crops, side, size, refs.source_size)

        return FrameBank(frames, make, keep=lambda i, frame: cut(frame, window, boxes[entries[i]]))

    def prepare(self, landmarks: np.ndarray, maps: np.ndarray, picks: np.ndarray) -> PreparedDetail:
        """Frames with these landmarks (n, N, 3; crop pixels), whose candidates `picks` (n, K) are warped onto them
        by `maps` (n, K, S, S, 2) at the crop's size: the candidates warped over each frame's face box at the
        source's resolution."""
        boxes = face_boxes(landmarks, self.landmark_size, self.side, FACE_MARGIN)
        known = np.zeros(picks.shape, bool)
        bands, coarse = [], []
        for t, box in enumerate(boxes):
            grid = self._grid(box)
            # float32: float16 would halve the memory (a 400-px box: 11 MB a frame) but converting to it took
            # as long as the warps themselves.
            bands.append(np.zeros((picks.shape[1], *box.shape, 3), np.float32))
            coarse.append(np.zeros((picks.shape[1], *box.shape), np.float32))
            for i, entry in enumerate(picks[t]):
                parts = self._parts(int(entry))
                if parts is None:
                    continue
                source, band, low = parts
                backward = fixed_point(self._native_map(maps[t, i], grid, source))
                remap(band, backward, cv2.INTER_CUBIC, out=bands[t][i])
                remap(low, backward, out=coarse[t][i])
                known[t, i] = True
        return PreparedDetail(boxes, bands, coarse, known)

    def compose(self, crop: np.ndarray, prepared: PreparedDetail, t: int) -> np.ndarray:
        """Frame t's generated crop (S, S, 3) uint8 → its window (side, side, 3) uint8 at the source's resolution,
        the face box with the detail of the candidates that agree with it."""
        big = resized(crop, (self.side, self.side))
        known = prepared.known[t]
        if not known.any():
            return big
        b = prepared.boxes[t]
        region = big[b.y0 : b.y1, b.x0 : b.x1].astype(np.float32)
        luma = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
        radius = AGREE_RADIUS * self.side / self.size
        gaps = np.stack(
            [
                cv2.GaussianBlur(cv2.absdiff(luma, prepared.coarse[t][i]), (0, 0), radius)
                if known[i]
                else np.full_like(luma, np.inf)
                for i in range(len(known))
            ]
        )
        nearest = gaps.min(axis=0)
        weights = np.exp(-(gaps - nearest) / SELECT_LEVELS)
        weights *= (np.exp(-((nearest / AGREE_LEVELS) ** AGREE_POWER)) * _fade(b.shape) / weights.sum(axis=0))[None]
        detail = np.einsum("khw,khwc->hwc", weights, prepared.bands[t])
        big[b.y0 : b.y1, b.x0 : b.x1] = np.clip(region + detail + 0.5, 0, 255).astype(np.uint8)
        return big

    def _parts(self, entry: int) -> tuple[Box, np.ndarray, np.ndarray] | None:
        """Bank entry `entry`'s (box, detail (h, w, 3), coarse brightness (h, w)), the last two float32: the coarse
        picture is the frame through the crop's resolution and back, as the generated crop is; the detail is
        what that loses, made ready for the bicubic warp that will move it (BICUBIC_COMPENSATION)."""
        parts = self.parts.get(entry)
        if parts is not None:
            return parts
        if entry not in self.crops:
            return None
        box, crop = self.crops[entry]
        h, w = crop.shape[:2]
        small = (max(round(w * self.size / self.side), 1), max(round(h * self.size / self.side), 1))
        low = resized(resized(crop, small), (w, h)).astype(np.float32)
        band = cv2.sepFilter2D(crop.astype(np.float32) - low, -1, BICUBIC_COMPENSATION, BICUBIC_COMPENSATION)
        parts = (box, band, cv2.cvtColor(low, cv2.COLOR_RGB2GRAY))
        with self.parts_lock:  # a service's renders and live sessions share one loaded avatar's detail
            if len(self.parts) >= self.CACHED:
                self.parts.pop(next(iter(self.parts)))
            self.parts[entry] = parts
        return parts

    def _grid(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel centre of `box` in the crop's pixel coordinates (OpenCV's: pixel i's centre at i)."""
        ratio = self.size / self.side
        xs = (np.arange(box.x0, box.x1, dtype=np.float32) + 0.5) * ratio - 0.5
        ys = (np.arange(box.y0, box.y1, dtype=np.float32) + 0.5) * ratio - 0.5
        return np.broadcast_to(xs[None], box.shape).copy(), np.broadcast_to(ys[:, None], box.shape).copy()

    def _native_map(self, crop_map: np.ndarray, grid: tuple[np.ndarray, np.ndarray], source: Box) -> np.ndarray:
        """A warp's backward map at the crop's size (S, S, 2) → at `grid`'s pixels at the source's resolution, in
        the pixels of the bank frame's `source` box."""
        at_box = cv2.remap(crop_map, *grid, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        scale = self.side / self.size
        offset = np.array([0.5 * scale - 0.5 - source.x0, 0.5 * scale - 0.5 - source.y0], np.float32)
        return at_box * np.float32(scale) + offset


def face_boxes(landmarks: np.ndarray, landmark_size: int, side: int, margin: float, extra: float = 0.0) -> list[Box]:
    """Each frame's face box in window pixels from its landmarks (T, N, 3) in crop pixels of `landmark_size`,
    widened by `margin` of its larger side and `extra` pixels, inside the window."""
    face = landmarks[:, : topology.NUM_LANDMARKS, :2] * (side / landmark_size)
    low, high = np.floor(face.min(axis=1)).astype(int), np.ceil(face.max(axis=1)).astype(int)
    boxes = []
    for (x0, y0), (x1, y1) in zip(low, high):
        box = Box(int(x0), int(y0), int(x1), int(y1))
        boxes.append(box.widened(margin * max(box.shape) + extra, side))
    return boxes


def _fade(shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32: 1 inside, rising from 0 at the edges over RAMP of the shorter side along a smoothstep."""
    ramp = max(RAMP * min(shape), 1.0)
    fades = [np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / ramp, 0, 1) for n in shape]
    fade = np.minimum(fades[0][:, None], fades[1][None, :])
    return (fade * fade * (3 - 2 * fade)).astype(np.float32)


def cut(frame: np.ndarray, window: Box, region: Box) -> np.ndarray:
    """`region` (window pixels) of the crop window `window` (frame pixels) of `frame`, its edge pixels repeated
    where it reaches past the frame."""
    height, width = frame.shape[:2]
    x0, y0 = window.x0 + region.x0, window.y0 + region.y0
    x1, y1 = window.x0 + region.x1, window.y0 + region.y1
    inside = frame[max(y0, 0) : max(min(y1, height), 0), max(x0, 0) : max(min(x1, width), 0)]
    pads = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    return cv2.copyMakeBorder(inside, *pads, cv2.BORDER_REPLICATE) if any(pads) else inside.copy()
