"""An invisible watermark in every generated frame, that says "made by AMG" (and which avatar and render) after
what happens to videos on the way to viewers: re-encoding, scaling, cropping, another frame rate.

Embedding adds a faint pattern to the frames' brightness (the same to R, G and B, so colours do not shift): a
tile of smooth random cells, repeated over the frame with a period tied to the frame's height, so that scaling
the video scales the pattern with it. The tile is a sum of keyed ±1 patterns: a synchronisation pattern with
half the energy, and one pattern per payload bit whose sign is the bit. The pattern is the same in every frame,
so any number of frames, at any frame rate, add up.

Detection pools evidence over frames: each frame's band-passed brightness is folded onto one tile (summed tile
by tile) for each candidate tile size (a crop changes the height the period is tied to), the folded sums are
cross-correlated with the synchronisation pattern over every cyclic shift (a crop also shifts the pattern), and
the best (size, shift) must stand out of the correlation's own spread by a margin no real video reaches. The
payload is then read at that alignment; a detection also needs the fixed mark's bits. NumPy and OpenCV only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Iterable

import cv2
import numpy as np

KEY = b"AMG watermark v1"
CELLS = 16  # cells per tile side: the pattern's detail
TILES_PER_HEIGHT = 2  # tile period = frame height / this
AMPLITUDE = 1.2  # RMS of the added pattern over time, in 8-bit levels
# The pattern's strength follows a sine of this period (seconds): detection reads that frequency of each pixel's
# brightness over time, so what stays still in a video (a background, a chair) cannot hide the pattern, nor fake
# it, however strongly it happens to resemble it.
PERIOD_S = 1.0
MOTION_LEVELS = 2.0  # a frame-to-frame change (8-bit levels) that halves a pixel's weight in detection
MARK = 0xA7  # the fixed 8 payload bits every AMG video carries
PAYLOAD_BITS = 40  # the mark (8), an avatar id (16), a render id (16)
# Detection: tile sizes searched, relative to the frame height's (crops of up to a fifth, either way), and the
# resolution each tile is folded at (pixels per cell).
SCALES = np.exp(np.linspace(np.log(0.8), np.log(1.25), 73))
FOLD = 4
ANALYSIS_HEIGHT = 256  # larger frames are analysed at this height (their cells still span 8 pixels)
# A detection needs the synchronisation peak this many standard deviations above its correlation surface's own
# spread. Unmarked real footage reached 6.9 at most (every shared video, whole and in 5-s windows, as it is and at
# CRF 30: benchmarks/marks.py); a false "made by AMG" about real footage is the worse error, so the margin.
THRESHOLD = 7.5


@cache
def _patterns() -> np.ndarray:
    """(1 + PAYLOAD_BITS, CELLS, CELLS) keyed random patterns, synchronisation first: orthogonal to each other and
    to a flat tile, of unit energy per cell, so that reading one bit sees nothing of the others."""
    seed = int.from_bytes(hashlib.sha256(KEY).digest()[:8], "little")
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(CELLS * CELLS, 2 + PAYLOAD_BITS))
    signs[:, 0] = 1.0  # the flat tile first: the patterns come out free of it
    basis, _ = np.linalg.qr(signs)
    return (basis[:, 1:].T * CELLS).reshape(1 + PAYLOAD_BITS, CELLS, CELLS)


@dataclass(frozen=True)
class Payload:
    """What a watermark says: the fixed AMG mark, an avatar id and a render id (16 bits each)."""

    avatar: int
    render: int

    @classmethod
    def of(cls, avatar: str, render: str) -> Payload:
        return cls(_id16(avatar), _id16(render))

    def bits(self) -> np.ndarray:
        value = (MARK << 32) | (self.avatar << 16) | self.render
        return np.array([(value >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)], np.float64)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> tuple[int, Payload]:
        value = int("".join(str(int(b)) for b in bits), 2)
        return value >> 32, cls((value >> 16) & 0xFFFF, value & 0xFFFF)


def _id16(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big")


def tile(payload: Payload) -> np.ndarray:
    """(CELLS, CELLS) float: the synchronisation pattern (half the energy) plus each bit's pattern, signed."""
    patterns = _patterns()
    signs = 2 * payload.bits() - 1
    data = np.tensordot(signs, patterns[1:], axes=1) / np.sqrt(PAYLOAD_BITS)
    return (patterns[0] + data) / np.sqrt(2)


# Every render has its own payload: a few recent patterns are kept (a service renders one video at a time per
# worker, a render writes at most two sizes), not one per render ever made.
@lru_cache(maxsize=4)
def _frame_pattern(payload: Payload, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 pattern of RMS AMPLITUDE for frames of this size, the same in each channel: the tile
    repeated with period height / TILES_PER_HEIGHT."""
    pattern = _repeated(tile(payload), height, width, height / TILES_PER_HEIGHT)
    pattern = (pattern * (AMPLITUDE / pattern.std())).astype(np.float32)
    return np.repeat(pattern[..., None], 3, axis=2)


def _repeated(cells: np.ndarray, height: int, width: int, period: float) -> np.ndarray:
    """(height, width): the (CELLS, CELLS) tile repeated every `period` pixels, its cells smoothly interpolated
    across tile borders too (no edges to see or to cost the encoder bits)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = ((xs + 0.5) / period * CELLS - 0.5) % CELLS
    map_y = ((ys + 0.5) / period * CELLS - 0.5) % CELLS
    return cv2.remap(cells.astype(np.float32), map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)


class Embedder:
    """Adds the watermark of `payload` to uint8 RGB frames (any size; the pattern is made once per size)."""

    def __init__(self, payload: Payload):
        self.payload = payload

    def __call__(self, frame: np.ndarray, seconds: float) -> np.ndarray:
        """`frame`, shown at `seconds` into the video, marked."""
        pattern = _frame_pattern(self.payload, *frame.shape[:2])
        strength = float(np.sqrt(2) * np.sin(2 * np.pi * seconds / PERIOD_S))
        # One saturating, rounding pass in OpenCV: 4.5x NumPy's float round trip on a 720p frame.
        return cv2.addWeighted(np.ascontiguousarray(frame), 1.0, pattern, strength, 0.0, dtype=cv2.CV_8U)


@dataclass(frozen=True)
class Detection:
    found: bool
    score: float  # the synchronisation peak in standard deviations of its correlation surface
    scale: float  # the tile size found, relative to the one of an uncropped frame of this height
    frames: int
    mark_ok: bool  # the fixed mark's bits read right: then the ids are likely right too
    payload: Payload | None  # the ids read, where the mark was


class Detector:
    """Pools evidence over frames (uint8 RGB, any size): `add` each frame, then `result()`."""

    def __init__(self):
        side = CELLS * FOLD
        self.wave = np.zeros((len(SCALES), side, side), np.complex128)  # each folded pixel's sine component
        self.total = np.zeros((len(SCALES), side, side))  # and its sum, to take the still part out
        self.phasors = 0j
        self.frames = 0
        self.previous: np.ndarray | None = None

    def add(self, frame: np.ndarray, seconds: float) -> None:
        """One frame, shown at `seconds` into the video."""
        luma = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
        if luma.shape[0] > ANALYSIS_HEIGHT:  # the pattern scales with the frame: a smaller copy holds all of it
            factor = ANALYSIS_HEIGHT / luma.shape[0]
            luma = cv2.resize(luma, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        height = luma.shape[0]
        band = _band_pass(luma, height / TILES_PER_HEIGHT / CELLS)  # once, at the nominal cell size
        band = band * self._stillness(luma)
        phasor = np.exp(-2j * np.pi * seconds / PERIOD_S)
        for i, scale in enumerate(SCALES):
            cell = height / TILES_PER_HEIGHT * scale / CELLS  # pixels per cell in this frame, if this scale
            factor = FOLD / cell
            resized = cv2.resize(band, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            folded = _fold(resized, CELLS * FOLD)
            self.wave[i] += folded * phasor
            self.total[i] += folded
        self.phasors += phasor
        self.frames += 1

    def _stillness(self, luma: np.ndarray) -> np.ndarray:
        """Per pixel, how little it changed since the previous frame (1: not at all): a moving mouth or head
        changes by tens of levels, swamping the pattern's one, so where the picture moves it is weighed less."""
        previous, self.previous = self.previous, luma
        if previous is None or previous.shape != luma.shape:
            return np.ones_like(luma)
        change = cv2.GaussianBlur(np.abs(luma - previous), (0, 0), 2.0)
        return 1.0 / (1.0 + (change / MOTION_LEVELS) ** 2)

    def result(self) -> Detection:
        if not self.frames:
            return Detection(False, 0.0, 1.0, 0, False, None)
        # The sine component with the still part removed (what does not change over the window adds nothing),
        # whitened: each spatial frequency at unit magnitude, so the picture's strong low frequencies weigh no
        # more than the pattern's (a phase-only correlation: sharp peaks where the pattern is, flat elsewhere).
        waves = np.stack([_whitened(w) for w in self.wave - self.total * (self.phasors / self.frames)])
        sync = _upsampled(_patterns()[0])
        best = (-np.inf, 0, (0, 0), 0j)
        for i, wave in enumerate(waves):
            surface = np.abs(_cyclic_correlation(wave, sync))
            score = (surface.max() - surface.mean()) / (surface.std() + 1e-12)
            if score > best[0]:
                shift = np.unravel_index(surface.argmax(), surface.shape)
                best = (float(score), i, shift, 0j)
        score, i, shift, _ = best
        aligned = np.roll(waves[i], (-shift[0], -shift[1]), axis=(0, 1))
        reference = np.sum(aligned * sync)
        bits = np.array(
            [np.real(np.sum(aligned * _upsampled(p)) * np.conj(reference)) > 0 for p in _patterns()[1:]], np.float64
        )
        mark, payload = Payload.from_bits(bits)
        mark_ok = mark == MARK
        found = score >= THRESHOLD
        readable = found and mark_ok
        return Detection(found, score, float(SCALES[i]), self.frames, mark_ok, payload if readable else None)


def detect(frames: Iterable[np.ndarray], fps: float) -> Detection:
    detector = Detector()
    for index, frame in enumerate(frames):
        detector.add(frame, index / fps)
    return detector.result()


def _band_pass(image: np.ndarray, cell: float) -> np.ndarray:
    """The pattern's band, for cells of `cell` pixels: detail finer than a cell and brightness coarser than a few
    cells removed (both are the picture's, not the pattern's)."""
    fine = cv2.GaussianBlur(image, (0, 0), max(cell * 0.35, 0.3))
    coarse = cv2.GaussianBlur(image, (0, 0), cell * 2.0)
    return fine - coarse


def _fold(image: np.ndarray, side: int) -> np.ndarray:
    """Whole side x side tiles of `image`, summed (the tiles' alignment is found later, by correlation)."""
    rows, cols = image.shape[0] // side, image.shape[1] // side
    if rows == 0 or cols == 0:
        return np.zeros((side, side))
    whole = image[: rows * side, : cols * side].astype(np.float64)
    return whole.reshape(rows, side, cols, side).sum(axis=(0, 2))


def _upsampled(pattern: np.ndarray) -> np.ndarray:
    """A pattern at the folding resolution (FOLD pixels per cell), interpolated as the embedder does."""
    side = CELLS * FOLD
    return _repeated(pattern, side, side, side)


def _whitened(image: np.ndarray) -> np.ndarray:
    spectrum = np.fft.fft2(image)
    return np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9 * np.abs(spectrum).max() + 1e-12))


def _cyclic_correlation(image: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Correlation of `image` (real or complex) with the real `pattern` at every cyclic shift (FFT)."""
    return np.fft.ifft2(np.fft.fft2(image) * np.conj(np.fft.fft2(pattern)))
