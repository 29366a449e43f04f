"""An invisible watermark in every generated frame, that says "made by AMG" (and which avatar and render) after
what happens to videos on the way to viewers: re-encoding, scaling, cropping, another frame rate.

Embedding adds a faint pattern to the frames' brightness (to R, G and B in proportion to their share of it): a
tile of smooth random cells, repeated over the frame with a period tied to the frame's height, so that scaling
the video scales the pattern with it. The tile is a sum of keyed ±1 patterns: a synchronisation pattern with
most of the energy, and one pattern per payload bit whose sign is the bit. Its strength follows a 1-s sine over
time, and over the picture it is larger where the picture stands still (from one frame to the next) and smaller
where it moves, at the same mean square: detection weighs moving pixels down, so energy there would be lost.

Detection pools evidence over frames: each pixel's band-passed brightness is demodulated at the sine's frequency
(what stands still adds nothing) and weighed by its own noise, measured at nearby frequencies that carry no
mark. The result is folded onto one tile (summed tile by tile) for each candidate tile size (a crop changes the
height the period is tied to) and cross-correlated with the synchronisation pattern over every cyclic shift (a
crop also shifts the pattern); the best (size, shift) must stand out of the correlation's own spread by a margin
no real video reaches. The payload is then read at that alignment. NumPy and OpenCV only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Iterable

import cv2
import numpy as np

# v2: another tile (sync share, the stillness mask) and detector; v1 marks are not read as v2 ones.
KEY = b"AMG watermark v2"
CELLS = 16  # cells per tile side: the pattern's detail
TILES_PER_HEIGHT = 2  # tile period = frame height / this
AMPLITUDE = 1.55  # RMS of the added brightness over time and picture, in 8-bit levels
# The brightness is added to R, G and B in proportion to their weights in it (BT.601 luma, what encoders keep at
# full resolution and detection reads): the same brightness for 0.75x the mean square error of adding it equally
# to each, so 1.55 levels of brightness cost 1.79 levels² (1.87 with rounding: -0.09 dB on a 28.7-dB render).
# The colour moves by under half the brightness's change (Cb -0.42x, Cr -0.24x).
LUMA = np.array([0.299, 0.587, 0.114])
CHANNEL_GAINS = tuple(float(g) for g in LUMA / np.sum(LUMA**2))
# The synchronisation pattern's share of the energy: detection sees only it, the payload is read once it is found
# (at 0.5, windows of 5 s scaled to half size, cropped and at CRF 30 scored 6.5-10; at 0.9, 8.4-9.6).
SYNC_SHARE = 0.9
# The pattern's strength follows a sine of this period (seconds): detection reads that frequency of each pixel's
# brightness over time, so what stays still in a video (a background, a chair) cannot hide the pattern, nor fake
# it, however strongly it happens to resemble it.
PERIOD_S = 1.0
# Embedding: the picture's change from the previous frame (8-bit levels, at the scale of a cell) that halves the
# pattern's amplitude there, before the amplitudes are scaled back to AMPLITUDE over the frame; computed on a copy
# MASK_HEIGHT rows high (2 per cell), as the change is smooth at that scale.
STILL_LEVELS = 2.0
MASK_HEIGHT = 2 * CELLS * TILES_PER_HEIGHT
MOTION_LEVELS = 2.0  # detection: a frame-to-frame change (8-bit levels) that halves a pixel's weight
# Detection: the frequencies (in sine frequencies) whose components measure each pixel's noise, near the sine's
# own, at least 2 cycles per 5-s window away from it (no mark leaks into them), and the noise power (levels²)
# under which a pixel is no better than this.
NOISE_FREQUENCIES = (0.5, 0.6, 1.4, 1.5)
NOISE_FLOOR = 1.0
# The payload: 8 check bits (a keyed hash of the ids: ids read wrong are not reported, but for 1 in 256), an avatar
# id (16) and a render id (16). The fixed AMG mark is the synchronisation pattern itself (keyed by KEY). The
# check was a fixed byte in v1: its bits read right said nothing of the ids' own.
PAYLOAD_BITS = 40
# Detection: tile sizes searched, relative to the frame height's: a crop only enlarges the tile in the frame, up
# to a crop of a quarter of the height (10 % each side and the label's band together: 1.26); and the resolution
# each tile is folded at (pixels per cell).
SCALES = np.exp(np.linspace(np.log(0.95), np.log(1.35), 60))
FOLD = 4
BAND = (0.35, 2.0)  # detection's band pass: Gaussian blurs of these many cells, the fine one less the coarse
ANALYSIS_HEIGHT = 256  # larger frames are analysed at this height (their cells still span 8 pixels)
# A detection needs the synchronisation peak this many standard deviations above its correlation surface's own
# spread. Unmarked real footage reached 7.21 at most (every shared video, whole and in 5-s windows, as it is and
# at CRF 30: benchmarks/marks.py); a false "made by AMG" about real footage is the worse error, so the margin
# (marked 5-s windows, all transforms at once: 7.8 at least).
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

    def check(self) -> int:
        return hashlib.sha256(KEY + self.avatar.to_bytes(2, "big") + self.render.to_bytes(2, "big")).digest()[0]

    def bits(self) -> np.ndarray:
        value = (self.check() << 32) | (self.avatar << 16) | self.render
        return np.array([(value >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)], np.float64)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> tuple[int, Payload]:
        """(the check bits read, the ids read): the ids are right where the check is theirs."""
        value = int("".join(str(int(b)) for b in bits), 2)
        return value >> 32, cls((value >> 16) & 0xFFFF, value & 0xFFFF)


def _id16(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big")


def tile(payload: Payload) -> np.ndarray:
    """(CELLS, CELLS) float of unit energy per cell: the synchronisation pattern (SYNC_SHARE of the energy) plus
    each bit's pattern, signed."""
    patterns = _patterns()
    signs = 2 * payload.bits() - 1
    data = np.tensordot(signs, patterns[1:], axes=1) / np.sqrt(PAYLOAD_BITS)
    return np.sqrt(SYNC_SHARE) * patterns[0] + np.sqrt(1 - SYNC_SHARE) * data


# Every render has its own payload: a few recent patterns are kept (a service renders one video at a time per
# worker, a render writes at most two sizes), not one per render ever made.
@lru_cache(maxsize=4)
def _frame_pattern(payload: Payload, height: int, width: int) -> np.ndarray:
    """(H, W) float32 pattern of RMS AMPLITUDE for frames of this size: the tile repeated with period
    height / TILES_PER_HEIGHT."""
    pattern = _repeated(tile(payload), height, width, height / TILES_PER_HEIGHT)
    return (pattern * (AMPLITUDE / pattern.std())).astype(np.float32)


def _repeated(cells: np.ndarray, height: int, width: int, period: float) -> np.ndarray:
    """(height, width): the (CELLS, CELLS) tile repeated every `period` pixels, its cells smoothly interpolated
    across tile borders too (no edges to see or to cost the encoder bits)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = ((xs + 0.5) / period * CELLS - 0.5) % CELLS
    map_y = ((ys + 0.5) / period * CELLS - 0.5) % CELLS
    return cv2.remap(cells.astype(np.float32), map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)


class Embedder:
    """Adds the watermark of `payload` to uint8 RGB frames (any size; the pattern is made once per size), called
    with the frames in order: each frame's pattern is shaped by its change from the one before."""

    def __init__(self, payload: Payload):
        self.payload = payload
        self.previous: np.ndarray | None = None  # the last frame's brightness, MASK_HEIGHT rows high

    def __call__(self, frame: np.ndarray, seconds: float) -> np.ndarray:
        """`frame`, shown at `seconds` into the video, marked."""
        frame = np.ascontiguousarray(frame)
        height, width = frame.shape[:2]
        # Made at most ANALYSIS_HEIGHT rows high (cells of 8 pixels, smooth) and enlarged: 720p in 2 ms, not 4.
        rows = min(height, ANALYSIS_HEIGHT)
        size = (max(1, round(width * rows / height)), rows)
        strength = float(np.sqrt(2) * np.sin(2 * np.pi * seconds / PERIOD_S))
        mask = cv2.resize(self._stillness(frame), size, interpolation=cv2.INTER_LINEAR)
        added = cv2.multiply(_frame_pattern(self.payload, rows, size[0]), mask, scale=strength)
        added = cv2.merge([added * gain for gain in CHANNEL_GAINS])
        if rows != height:
            added = cv2.resize(added, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.add(frame, added, dtype=cv2.CV_8U)  # saturating and rounding, in one pass

    def _stillness(self, frame: np.ndarray) -> np.ndarray:
        """(MASK_HEIGHT, w) float32 of RMS 1: the pattern's relative amplitude, less where the picture changed
        since the previous frame. Detection weighs changing pixels down, as a moving mouth or head swamps the
        pattern there; the same energy where the picture holds still is found (at CRF 30, half size: a fifth
        higher scores than the same amplitude everywhere). Less where the picture is textured did worse (the
        encoder keeps less of the pattern there)."""
        luma = cv2.cvtColor(_shrunk(frame, MASK_HEIGHT), cv2.COLOR_RGB2GRAY).astype(np.float32)
        previous, self.previous = self.previous, luma
        if previous is None or previous.shape != luma.shape:
            return np.ones_like(luma)
        change = cv2.GaussianBlur(cv2.absdiff(luma, previous), (0, 0), MASK_HEIGHT / (CELLS * TILES_PER_HEIGHT))
        amplitude = 1.0 / (1.0 + change / STILL_LEVELS)
        return amplitude / np.sqrt(np.mean(amplitude**2))


def _shrunk(frame: np.ndarray, rows: int) -> np.ndarray:
    """`frame` `rows` high, each pixel the mean of its area (of every few pixels of it above 4x that height: an
    area mean straight from 720p costs 2 ms)."""
    height, width = frame.shape[:2]
    if height > 4 * rows:
        frame = cv2.resize(frame, (round(width * 4 * rows / height), 4 * rows), interpolation=cv2.INTER_NEAREST)
    size = (max(1, round(frame.shape[1] * rows / frame.shape[0])), rows)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Detection:
    found: bool
    score: float  # the synchronisation peak in standard deviations of its correlation surface
    scale: float  # the tile size found, relative to the one of an uncropped frame of this height
    frames: int
    mark_ok: bool  # the payload's check bits agree with its ids: then the ids are right but for 1 in 256
    payload: Payload | None  # the ids read, where the mark was


class Detector:
    """Pools evidence over frames (uint8 RGB, any size): `add` each frame, then `result()`.

    A crop or a scaling is the same in every frame, so the pattern stays at the same pixels: each pixel's sine
    component is summed over the frames (and, to measure its noise, its components at NOISE_FREQUENCIES), and the
    search over tile sizes and shifts runs once, in `result()`."""

    def __init__(self):
        self.frequencies = np.array((1.0, *NOISE_FREQUENCIES)) / PERIOD_S
        self.waves: np.ndarray | None = None  # (frequencies, h, w) complex: each pixel's components
        self.total: np.ndarray | None = None  # each pixel's sum, to take the still part out
        self.phasors = np.zeros(len(self.frequencies), np.complex128)
        self.frames = 0
        self.previous: np.ndarray | None = None

    def add(self, frame: np.ndarray, seconds: float) -> None:
        """One frame, shown at `seconds` into the video."""
        luma = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
        if luma.shape[0] > ANALYSIS_HEIGHT:  # the pattern scales with the frame: a smaller copy holds all of it
            factor = ANALYSIS_HEIGHT / luma.shape[0]
            luma = cv2.resize(luma, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        if self.waves is None:
            self.waves = np.zeros((len(self.frequencies), *luma.shape), np.complex128)
            self.total = np.zeros(luma.shape)
        elif luma.shape != self.total.shape:  # a stream that changes size: one frame geometry is kept
            luma = cv2.resize(luma, self.total.shape[::-1], interpolation=cv2.INTER_AREA)
        band = _band_pass(luma, luma.shape[0] / TILES_PER_HEIGHT / CELLS) * self._stillness(luma)
        phasors = np.exp(-2j * np.pi * seconds * self.frequencies)
        self.waves += phasors[:, None, None] * band
        self.total += band
        self.phasors += phasors
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
        wave = self._weighted_wave()
        sync = _upsampled(_patterns()[0])
        best = (-np.inf, 1.0, (0, 0), np.zeros((1, 1)))
        for scale in SCALES:
            folded = self._folded(wave, scale)
            surface = np.abs(_cyclic_correlation(_whitened(folded), sync))
            score = (surface.max() - surface.mean()) / (surface.std() + 1e-12)
            if score > best[0]:
                best = (float(score), float(scale), np.unravel_index(surface.argmax(), surface.shape), folded)
        score, scale, shift, folded = best
        check, payload = Payload.from_bits(_bits(folded, shift, scale))
        found = score >= THRESHOLD
        checked = check == payload.check()
        return Detection(found, score, scale, self.frames, checked, payload if found and checked else None)

    def _weighted_wave(self) -> np.ndarray:
        """(h, w) complex: each pixel's sine component, its still part removed (what does not change over the
        window adds nothing there, but leaks into a window's sine component), divided by the pixel's noise power
        (a pixel that moves or flickers says little). The noise is the mean power of the same pixel's components
        at NOISE_FREQUENCIES, where no mark is: the still part weighs pixels by their total change over time,
        which includes the mark's own (at CRF 30: 11-12 against 6-9 unweighted; the total change: 10-12)."""
        components = self.waves - self.total * (self.phasors / self.frames)[:, None, None]
        noise = np.mean(np.abs(components[1:]) ** 2, axis=0) / self.frames
        return components[0] / (noise + NOISE_FLOOR)

    def _folded(self, wave: np.ndarray, scale: float) -> np.ndarray:
        """`wave` resampled to FOLD pixels per cell for tiles of `scale` times the nominal size, folded onto one."""
        cell = wave.shape[0] / TILES_PER_HEIGHT * scale / CELLS  # pixels per cell in this frame, if this scale
        factor = FOLD / cell
        parts = np.dstack([wave.real, wave.imag]).astype(np.float32)
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(parts, None, fx=factor, fy=factor, interpolation=interpolation)
        side = CELLS * FOLD
        return _fold(resized[..., 0], side) + 1j * _fold(resized[..., 1], side)


def _bits(folded: np.ndarray, shift: tuple[int, int], scale: float) -> np.ndarray:
    """The payload bits of the (unwhitened) folded tile whose synchronisation peak is at `shift`: a least-squares
    fit of all the patterns at once, each as detection sees it (band-passed, whitened as the tile is), and each
    bit's sign in the phase of the synchronisation's (the sine's phase is the window's, unknown). Fitted all at
    once because those filters make the patterns overlap, and the synchronisation has 9 times a bit's amplitude:
    read one by one, its overlap alone put 3-4 of 40 bits wrong on a flat grey picture (fitted: 1)."""
    spectrum = np.fft.fft2(np.roll(folded, (-shift[0], -shift[1]), axis=(0, 1)))
    magnitude = np.abs(spectrum) + 1e-9 * np.abs(spectrum).max() + 1e-12
    side = folded.shape[0]
    frequency = np.fft.fftfreq(side)
    squared = frequency[:, None] ** 2 + frequency[None, :] ** 2
    band = _gaussian(squared, BAND[0] * FOLD / scale) - _gaussian(squared, BAND[1] * FOLD / scale)
    templates = np.fft.fft2(np.stack([_upsampled(p) for p in _patterns()])) * (band / magnitude)
    seen = np.fft.ifft2(templates).real.reshape(len(templates), -1).T
    fit = np.linalg.lstsq(seen, np.fft.ifft2(spectrum / magnitude).reshape(-1), rcond=None)[0]
    return (np.real(fit[1:] * np.conj(fit[0])) > 0).astype(np.float64)


def detect(frames: Iterable[np.ndarray], fps: float) -> Detection:
    detector = Detector()
    for index, frame in enumerate(frames):
        detector.add(frame, index / fps)
    return detector.result()


def _gaussian(squared: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur's response of width `sigma` (pixels) at squared frequencies (cycles per pixel)."""
    return np.exp(-2 * (np.pi * sigma) ** 2 * squared)


def _band_pass(image: np.ndarray, cell: float) -> np.ndarray:
    """The pattern's band, for cells of `cell` pixels: detail finer than a cell and brightness coarser than a few
    cells removed (both are the picture's, not the pattern's)."""
    fine = cv2.GaussianBlur(image, (0, 0), max(cell * BAND[0], 0.3))
    coarse = cv2.GaussianBlur(image, (0, 0), cell * BAND[1])
    return fine - coarse


def _fold(image: np.ndarray, side: int) -> np.ndarray:
    """`image` cut in side x side tiles and summed, the last row and column of tiles partial (a 10 % crop of a
    two-tile frame leaves 1.8 tiles: whole tiles only would drop most of the rest)."""
    rows, cols = -(-image.shape[0] // side), -(-image.shape[1] // side)
    padded = np.zeros((rows * side, cols * side))
    padded[: image.shape[0], : image.shape[1]] = image
    return padded.reshape(rows, side, cols, side).sum(axis=(0, 2))


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
