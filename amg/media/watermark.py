"""An invisible watermark in every generated frame, that says "made by AMG" (and which avatar and render) after
what happens to videos on the way to viewers: re-encoding, scaling, cropping, another frame rate.

Embedding adds a faint pattern to the frames' brightness (to R, G and B in proportion to their share of it): a
tile of smooth random cells, repeated over the frame with a period tied to the frame's height, so that scaling
the video scales the pattern with it. The tile is a sum of keyed orthogonal patterns: a synchronisation pattern
with most of the energy, and for each id a keyed code word of signs over patterns of its own, whose sign flips
every few seconds. Its strength follows a 1-s sine over time, and over the picture it is larger where the
picture stands still and smaller where it moves, at the same mean square: detection weighs moving pixels down,
so energy there would be lost.

Detection pools evidence over frames: each pixel's band-passed brightness is demodulated at the sine's frequency
(what stands still adds nothing) and weighed by its own noise, measured at nearby frequencies that carry no
mark. The result is folded onto one tile (summed tile by tile) for each candidate tile size (a crop changes the
height the period is tied to) and cross-correlated with the synchronisation pattern over every cyclic shift (a
crop also shifts the pattern), each spatial frequency weighed by how much of the pattern re-encoding leaves
there; the best (size, shift) must stand out of the correlation's own spread by a margin that chance reaches in
about 4 searches of 10,000 (measured with keyed decoy patterns over real videos). The ids are then read at
that alignment from the same component taken with their signs, from a whole video (its start fixes the signs):
each id is the code word its chips correlate with best, reported only where it stands out. NumPy and OpenCV only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Iterable

import cv2
import numpy as np

# The synchronisation pattern's key: v3 kept v2's pattern (v2 marks are found, their ids not read); v1 marks are
# not found.
KEY = b"AMG watermark v2"
CELLS = 16  # cells per tile side: the pattern's detail
TILES_PER_HEIGHT = 2  # tile period = frame height / this
AMPLITUDE = 1.55  # RMS of the added brightness over time and picture, in 8-bit levels
# The brightness is added to R, G and B in proportion to their weights in it (BT.601 luma, what encoders keep at
# full resolution and detection reads): the same brightness for 0.75x the mean square error of adding it equally
# to each, so 1.55 levels of brightness cost 1.79 levels² (1.83 with rounding: -0.09 dB on a 28.7-dB render).
# The colour moves by under half the brightness's change (Cb -0.42x, Cr -0.24x).
LUMA = np.array([0.299, 0.587, 0.114])
CHANNEL_GAINS = (LUMA / np.sum(LUMA**2)).astype(np.float32)
# The synchronisation pattern's share of the energy: detection sees only it, the ids are read once it is found
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
# Embedding: the stillness and the enlarged addition are remade every this many frames (and where the ids' sign
# flips; each frame still has its own strength), and the addition is kept as uint8 around OFFSET. Every 4th
# frame: 720p 1.2 ms a frame (v2, every frame: 3.1-3.2). Every 8th (about 1.0 ms) let the stillness lag the
# picture: obama_clip2's 5-s windows, all transforms at once, 4 payloads: 7.75 on average against 8.05 (v2 8.06).
UPDATE_FRAMES = 4
OFFSET = 128
MOTION_LEVELS = 2.0  # detection: a frame-to-frame change (8-bit levels) that halves a pixel's weight
# Detection: the frequencies (in sine frequencies) whose components measure each pixel's noise, near the sine's
# own, at least 2 cycles per 5-s window away from it (no mark leaks into them), and the noise power (levels²)
# under which a pixel is no better than this.
NOISE_FREQUENCIES = (0.5, 0.6, 1.4, 1.5)
NOISE_FLOOR = 1.0
# The payload: each 16-bit id (avatar, render) is sent as a keyed random code word of ID_CHIPS signs, one per
# pattern, and read by correlating the chips read with all 65536 code words (maximum likelihood): the id's whole
# energy decides it, not a 16th of it per bit (v2's 40 bits of a tenth of the energy were never all read right).
ID_BITS = 16
ID_CHIPS = 96
# An id is reported only when its code word's correlation (in units of its spread over code words the chips are
# not made of) reaches ID_THRESHOLD (65535 wrong code words: 65535 x Q(6.5) = 3e-6 that one does) and stands
# ID_MARGIN above the next best (an id read wrong is mostly a near one, the right one close behind it). 96 chips:
# 64 or 127 read the ids of 10-s clips less well (127: the chips' patterns fill the tile and overlap more after
# detection's filters).
ID_THRESHOLD = 6.5
ID_MARGIN = 2.0
# The ids' sign flips every FLIP_S seconds from the video's start, the synchronisation's never: the ids are read
# from the sine's component taken with those signs, where the synchronisation cancels out. Read along with it, it
# leaked into the chips through the detection's weights and filters, in its phase, with more than the ids' own
# strength (10 s at CRF 18: the best correlations 4-5, under the threshold; with the signs 7-8.5). Every 4 s:
# every 1 s put the ids at the noise's frequencies (0.5, 1.5 Hz) and lowered detection by 0.7; 2 s read no better.
FLIP_S = 4.0
IDS_KEY = b"AMG watermark v3 ids"  # the ids' patterns and code words (v2's 40 bits are not read)
# Detection: tile sizes searched, relative to the frame height's: a crop only enlarges the tile in the frame, up
# to a crop of a quarter of the height (10 % each side and the label's band together: 1.26); and the resolution
# each tile is folded at (pixels per cell).
SCALES = np.exp(np.linspace(np.log(0.95), np.log(1.35), 60))
FOLD = 4
BAND = (0.35, 2.0)  # detection's band pass: Gaussian blurs of these many cells, the fine one less the coarse
# The synchronisation search weighs each spatial frequency of the folded tile by how much of the pattern survives
# there after re-encoding (a half-size frame at CRF 30 keeps about half of the coarsest frequencies, a tenth of
# the finest), and divides it by its magnitude to the power WHITENING. A phase-only correlation (power 1, no
# weight) gave frequencies that hold noise alone as much say as the rest, so chance peaks rose with marked ones
# (docs/decisions.md, "v4").
WHITENING = 0.7
SURVIVAL_CYCLES = 12.0
ANALYSIS_HEIGHT = 256  # larger frames are analysed at this height (their cells still span 8 pixels)
# A detection needs the synchronisation peak this many standard deviations above its correlation surface's own
# spread: where chance puts about 4 searches of 10,000 over real footage (keyed decoy patterns that no video
# carries, searched in every shared real video; benchmarks/marks.py), under what all transforms at once leave.
THRESHOLD = 7.0


@cache
def _patterns() -> np.ndarray:
    """(1 + 2 * ID_CHIPS, CELLS, CELLS) keyed random patterns, synchronisation first, then the avatar's chips and
    the render's: orthogonal to each other and to a flat tile, of unit energy per cell, so that reading one sees
    nothing of the others. The synchronisation pattern is v2's (the same draw), so marks of v2 are still found."""
    v2 = np.random.default_rng(_seed(KEY)).choice([-1.0, 1.0], size=(CELLS * CELLS, 42))  # v2: 2 + 40 bits
    chips = np.random.default_rng(_seed(IDS_KEY)).choice([-1.0, 1.0], size=(CELLS * CELLS, 2 * ID_CHIPS))
    signs = np.hstack([np.ones((CELLS * CELLS, 1)), v2[:, 1:2], chips])  # the flat tile first: the rest is free of it
    basis, _ = np.linalg.qr(signs)  # a column of Q depends only on the columns up to it: sync stays v2's
    return (basis[:, 1:].T * CELLS).reshape(1 + 2 * ID_CHIPS, CELLS, CELLS)


def _seed(key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


@cache
def _codes() -> np.ndarray:
    """(2**ID_BITS, ID_CHIPS) float32 of ±1: each id's keyed random code word."""
    bits = np.random.default_rng(_seed(IDS_KEY + b" codes")).integers(0, 2, (2**ID_BITS, ID_CHIPS), np.int8)
    return (2 * bits - 1).astype(np.float32)


@dataclass(frozen=True)
class Payload:
    """What a watermark says: the fixed AMG mark (the synchronisation pattern), an avatar id and a render id (16
    bits each)."""

    avatar: int
    render: int

    @classmethod
    def of(cls, avatar: str, render: str) -> Payload:
        return cls(_id16(avatar), _id16(render))


def _id16(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big")


def tiles(payload: Payload) -> tuple[np.ndarray, np.ndarray]:
    """Two (CELLS, CELLS) floats, together of unit energy per cell: the synchronisation pattern (SYNC_SHARE of
    the energy) and each id's code word over its chips' patterns (half the rest each)."""
    patterns = _patterns()
    chips = np.concatenate([_codes()[payload.avatar], _codes()[payload.render]])
    data = np.tensordot(chips, patterns[1:], axes=1) / np.sqrt(chips.size)
    return np.sqrt(SYNC_SHARE) * patterns[0], np.sqrt(1 - SYNC_SHARE) * data


def _flip(seconds: float) -> float:
    """The ids' sign at `seconds` into the video."""
    return 1.0 if int(seconds // FLIP_S) % 2 == 0 else -1.0


# Every render has its own payload: a few recent patterns are kept (a service renders one video at a time per
# worker, a render writes at most two sizes), not one per render ever made.
@lru_cache(maxsize=4)
def _frame_patterns(payload: Payload, height: int, width: int) -> np.ndarray:
    """(2, H, W) float32: the synchronisation's and the ids' patterns for frames of this size, each tile repeated
    with period height / TILES_PER_HEIGHT, together of RMS AMPLITUDE."""
    sync, ids = (_repeated(part, height, width, height / TILES_PER_HEIGHT) for part in tiles(payload))
    return (np.stack([sync, ids]) * (AMPLITUDE / (sync + ids).std())).astype(np.float32)


def _repeated(cells: np.ndarray, height: int, width: int, period: float) -> np.ndarray:
    """(height, width): the (CELLS, CELLS) tile repeated every `period` pixels, its cells smoothly interpolated
    across tile borders too (no edges to see or to cost the encoder bits)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = ((xs + 0.5) / period * CELLS - 0.5) % CELLS
    map_y = ((ys + 0.5) / period * CELLS - 0.5) % CELLS
    return cv2.remap(cells.astype(np.float32), map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)


class Embedder:
    """Adds the watermark of `payload` to uint8 RGB frames (any size; the pattern is made once per size), called
    with the frames in order: each frame's pattern is shaped by how the picture changed before it.

    What costs is touching every pixel of a large frame (at 720p a copy alone takes 0.2 ms, an enlargement 1 ms).
    So the addition at unit strength, shaped by the stillness, is made and enlarged to the frame every
    UPDATE_FRAMES frames only, as uint8 around OFFSET; each frame then takes it at the sine's strength and adds it
    in one saturating, rounding pass (cv2.addWeighted)."""

    def __init__(self, payload: Payload):
        self.payload = payload
        self.since_update = 0  # frames marked since the addition was made
        self.sign = 1.0  # the ids' sign in the addition
        self.previous: np.ndarray | None = None  # the brightness at the last update, MASK_HEIGHT rows high
        self.added: np.ndarray | None = None  # (H, W, 3) uint8: OFFSET + the addition at unit strength x scale
        self.scale = 1.0

    def __call__(self, frame: np.ndarray, seconds: float) -> np.ndarray:
        """`frame`, shown at `seconds` into the video, marked."""
        frame = np.ascontiguousarray(frame)
        sign = _flip(seconds)
        stale = self.added is None or self.added.shape != frame.shape or self.since_update >= UPDATE_FRAMES
        if stale or sign != self.sign:
            self.sign = sign
            self._update(frame)
            self.since_update = 0
        self.since_update += 1
        gain = float(np.sqrt(2) * np.sin(2 * np.pi * seconds / PERIOD_S)) / self.scale
        return cv2.addWeighted(frame, 1.0, self.added, gain, -OFFSET * gain, dtype=cv2.CV_8U)

    def _update(self, frame: np.ndarray) -> None:
        """The addition at unit strength for the frames until the next update: the pattern, made at most
        ANALYSIS_HEIGHT rows high (cells of 8 pixels, smooth), times the stillness, per channel, scaled to fill
        uint8 around OFFSET (under a tenth of a level's precision lost) and enlarged to the frame."""
        height, width = frame.shape[:2]
        rows = min(height, ANALYSIS_HEIGHT)
        size = (max(1, round(width * rows / height)), rows)
        mask = cv2.resize(self._stillness(frame), size, interpolation=cv2.INTER_LINEAR)
        sync, ids = _frame_patterns(self.payload, rows, size[0])
        luma = cv2.multiply(cv2.scaleAdd(ids, self.sign, sync), mask)
        self.scale = (OFFSET - 1) / (float(np.abs(luma).max()) * CHANNEL_GAINS.max() + 1e-6)
        # Each channel scaled, offset, rounded and saturated into uint8 in one pass (numpy's broadcast: 6x slower).
        channels = [
            cv2.addWeighted(luma, float(gain * self.scale), luma, 0.0, OFFSET, dtype=cv2.CV_8U)
            for gain in CHANNEL_GAINS
        ]
        added = cv2.merge(channels)
        self.added = added if rows == height else cv2.resize(added, (width, height), interpolation=cv2.INTER_LINEAR)

    def _stillness(self, frame: np.ndarray) -> np.ndarray:
        """(MASK_HEIGHT, w) float32 of RMS 1: the pattern's relative amplitude, less where the picture changed
        (per frame, since the last update). Detection weighs changing pixels down, as a moving mouth or head
        swamps the pattern there; the same energy where the picture holds still is found (at CRF 30, half size:
        a fifth higher scores than the same amplitude everywhere). Less where the picture is textured did worse
        (the encoder keeps less of the pattern there)."""
        luma = cv2.cvtColor(_shrunk(frame, MASK_HEIGHT), cv2.COLOR_RGB2GRAY).astype(np.float32)
        previous, self.previous = self.previous, luma
        if previous is None or previous.shape != luma.shape:
            return np.ones_like(luma)
        change = cv2.absdiff(luma, previous) / max(1, self.since_update)
        change = cv2.GaussianBlur(change, (0, 0), MASK_HEIGHT / (CELLS * TILES_PER_HEIGHT))
        amplitude = 1.0 / (1.0 + change / STILL_LEVELS)
        return amplitude / np.sqrt(np.mean(amplitude**2))


def _shrunk(frame: np.ndarray, rows: int) -> np.ndarray:
    """`frame` `rows` high, each pixel the mean of its area (of every few pixels of it above 2x that height: an
    area mean straight from 720p to 64 rows costs 2 ms, from 256 rows of it 0.4-0.8 ms, from 128 rows 0.05)."""
    height, width = frame.shape[:2]
    if height > 2 * rows:
        frame = cv2.resize(frame, (round(width * 2 * rows / height), 2 * rows), interpolation=cv2.INTER_NEAREST)
    size = (max(1, round(frame.shape[1] * rows / frame.shape[0])), rows)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Detection:
    found: bool
    score: float  # the synchronisation peak in standard deviations of its correlation surface
    scale: float  # the tile size found, relative to the one of an uncropped frame of this height
    frames: int
    mark_ok: bool  # both ids' code words stood out (ID_THRESHOLD, ID_MARGIN): then `payload` holds them
    payload: Payload | None  # the ids read, where the mark was found and they stood out
    id_score: float = 0.0  # the weaker id's code word correlation, in noise deviations


class Detector:
    """Pools evidence over frames (uint8 RGB, any size): `add` each frame, then `result()`.

    A crop or a scaling is the same in every frame, so the pattern stays at the same pixels: each pixel's sine
    component is summed over the frames (and, to measure its noise, its components at NOISE_FREQUENCIES), and the
    search over tile sizes and shifts runs once, in `result()`."""

    def __init__(self):
        self.frequencies = np.array((1.0, *NOISE_FREQUENCIES)) / PERIOD_S
        self.waves: np.ndarray | None = None  # (frequencies, h, w) complex: each pixel's components
        self.total: np.ndarray | None = None  # each pixel's sum, to take the still part out
        self.flipped: np.ndarray | None = None  # (h, w) complex: each pixel's sine component, the ids' sign on
        self.stillness: np.ndarray | None = (
            None  # (2, h, w): each pixel's weight for motion, summed, and with that sign
        )
        self.phasors = np.zeros(len(self.frequencies), np.complex128)
        self.flipped_phasor = 0j
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
            self.flipped = np.zeros(luma.shape, np.complex128)
            self.stillness = np.zeros((2, *luma.shape))
        elif luma.shape != self.total.shape:  # a stream that changes size: one frame geometry is kept
            luma = cv2.resize(luma, self.total.shape[::-1], interpolation=cv2.INTER_AREA)
        stillness = self._stillness(luma)
        band = _band_pass(luma, luma.shape[0] / TILES_PER_HEIGHT / CELLS) * stillness
        phasors = np.exp(-2j * np.pi * seconds * self.frequencies)
        sign = _flip(seconds)
        self.waves += phasors[:, None, None] * band
        self.flipped += (sign * phasors[0]) * band
        self.total += band
        self.stillness[0] += stillness
        self.stillness[1] += sign * stillness
        self.phasors += phasors
        self.flipped_phasor += sign * phasors[0]
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
        wave, ids_wave, gain = self._weighted_waves()
        score, scale, shift = self._search(wave, [_upsampled(_patterns()[0])])[0]
        found = score >= THRESHOLD
        folded = self._folded(wave, scale)
        gain = self._folded(gain, scale).real
        reference = _fit(folded, gain, shift, scale)[0]
        payload, id_score = _ids(_fit(self._folded(ids_wave, scale), gain, shift, scale)[1:], reference)
        read = found and payload is not None
        return Detection(found, score, scale, self.frames, read, payload if read else None, id_score)

    def scores(self, patterns: np.ndarray) -> list[float]:
        """The score of each of `patterns` ((n, CELLS, CELLS) cells of unit energy, like the synchronisation's),
        searched as the synchronisation pattern is. With keyed random patterns that no video carries, these
        are chance's scores, many per video: benchmarks/marks.py measures with them how often chance reaches
        THRESHOLD."""
        templates = [_upsampled(cells) for cells in patterns]
        return [best[0] for best in self._search(self._weighted_waves()[0], templates)]

    def _search(self, wave: np.ndarray, templates: list[np.ndarray]) -> list[tuple[float, float, tuple]]:
        """Each template's best (score, scale, shift) over SCALES and every cyclic shift of the folded tile. A
        score is the correlation peak's height above its surface's mean in standard deviations of that
        surface."""
        conjugates = np.conj(np.fft.fft2(np.stack(templates)))
        best = [(-np.inf, 1.0, (0, 0))] * len(templates)
        for scale in SCALES:
            surfaces = np.abs(np.fft.ifft2(_weighted_spectrum(self._folded(wave, scale))[None] * conjugates))
            flat = surfaces.reshape(len(templates), -1)
            scores = (flat.max(axis=1) - flat.mean(axis=1)) / (flat.std(axis=1) + 1e-12)
            for i, score in enumerate(scores):
                if score > best[i][0]:
                    best[i] = (float(score), float(scale), np.unravel_index(flat[i].argmax(), surfaces.shape[1:]))
        return best

    def _weighted_waves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """((h, w) complex, (h, w) complex, (h, w)): each pixel's sine component, its still part removed (what does not change over the
        window adds nothing there, but leaks into a window's sine component), divided by the pixel's noise power
        (a pixel that moves or flickers says little). The noise is the mean power of the same pixel's components
        at NOISE_FREQUENCIES, where no mark is: the still part weighs pixels by their total change over time,
        which includes the mark's own (at CRF 30: 11-12 against 6-9 unweighted; the total change: 10-12). Then
        the same with the ids' signs, less what the synchronisation left in it where the signs do not sum to 0
        (its part in the plain component, in the share the signs leave it, pixel by pixel as motion weighed it).
        And the gain this gives a mark of the same strength everywhere: its mean motion weight over the noise."""
        components = self.waves - self.total * (self.phasors / self.frames)[:, None, None]
        noise = np.mean(np.abs(components[1:]) ** 2, axis=0) / self.frames + NOISE_FLOOR
        flipped = self.flipped - self.total * (self.flipped_phasor / self.frames)
        unbalanced = self.stillness[1] / (self.stillness[0] + 1e-12)
        flipped -= unbalanced * components[0]
        return components[0] / noise, flipped / noise, self.stillness[0] / (self.frames * noise)

    def _folded(self, wave: np.ndarray, scale: float) -> np.ndarray:
        """`wave` resampled to FOLD pixels per cell for tiles of `scale` times the nominal size, folded onto one."""
        cell = wave.shape[0] / TILES_PER_HEIGHT * scale / CELLS  # pixels per cell in this frame, if this scale
        factor = FOLD / cell
        parts = np.dstack([wave.real, wave.imag]).astype(np.float32)
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(parts, None, fx=factor, fy=factor, interpolation=interpolation)
        side = CELLS * FOLD
        return _fold(resized[..., 0], side) + 1j * _fold(resized[..., 1], side)


def _fit(folded: np.ndarray, gain: np.ndarray, shift: tuple[int, int], scale: float) -> np.ndarray:
    """(1 + 2 * ID_CHIPS) complex: each pattern's amplitude in the (unwhitened) folded tile whose synchronisation
    peak is at `shift`, by a least-squares fit of all the patterns at once, each as detection sees it: weighed
    by the folded `gain` of its pixels, band-passed, whitened as the tile is. The synchronisation has 4 times an
    id's amplitude, and those weights and filters make the patterns overlap: fitted without the gain, its
    overlap with the chips outweighed the ids themselves (real video, CRF 18: their spread over the code words
    7 times the noise's)."""
    shift = (-shift[0], -shift[1])
    spectrum = np.fft.fft2(np.roll(folded, shift, axis=(0, 1)))
    magnitude = np.abs(spectrum) + 1e-9 * np.abs(spectrum).max() + 1e-12
    side = folded.shape[0]
    frequency = np.fft.fftfreq(side)
    squared = frequency[:, None] ** 2 + frequency[None, :] ** 2
    band = _gaussian(squared, BAND[0] * FOLD / scale) - _gaussian(squared, BAND[1] * FOLD / scale)
    templates = np.fft.fft2(_upsampled_patterns() * np.roll(gain, shift, axis=(0, 1))) * (band / magnitude)
    seen = np.fft.ifft2(templates).real.reshape(len(templates), -1).T
    return np.linalg.lstsq(seen, np.fft.ifft2(spectrum / magnitude).reshape(-1), rcond=None)[0]


def _ids(fit: np.ndarray, reference: complex) -> tuple[Payload | None, float]:
    """(the ids, where both code words stand out; the weaker one's correlation). The chips are the fitted
    amplitudes (`fit`, of the chips' patterns) in the phase of the synchronisation's (`reference`: the sine's
    phase is the window's, unknown). Each code word's
    correlation is taken over the chips' own norm: for any chips not made from it (noise, another id, the
    synchronisation's leftovers), a random code word's then has mean 0 and spread 1 (at most exp(-t²/2) of
    reaching t, whatever the chips), so the threshold needs no noise model; the right one's reaches sqrt(ID_CHIPS)
    when the chips are noise-free."""
    chips = np.real(fit * np.conj(reference)).reshape(2, ID_CHIPS).astype(np.float32)
    correlations = chips @ _codes().T / (np.linalg.norm(chips, axis=1, keepdims=True) + 1e-30)
    ranked = np.sort(correlations, axis=1)
    best, runner_up = ranked[:, -1], ranked[:, -2]
    weaker = float(best.min())
    if weaker < ID_THRESHOLD or (best - runner_up).min() < ID_MARGIN:
        return None, weaker
    avatar, render = correlations.argmax(axis=1)
    return Payload(int(avatar), int(render)), weaker


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


@cache
def _upsampled_patterns() -> np.ndarray:
    return np.stack([_upsampled(p) for p in _patterns()])


def _upsampled(pattern: np.ndarray) -> np.ndarray:
    """A pattern at the folding resolution (FOLD pixels per cell), interpolated as the embedder does."""
    side = CELLS * FOLD
    return _repeated(pattern, side, side, side)


def _weighted_spectrum(tile: np.ndarray) -> np.ndarray:
    """The folded tile's spectrum, each frequency divided by its magnitude to the power WHITENING (nearly a
    phase-only correlation: the picture's own spectrum falls steeply, the pattern's is flat) and weighed by
    how much of the pattern re-encoding keeps there, exp(-cycles per tile / SURVIVAL_CYCLES)."""
    spectrum = np.fft.fft2(tile)
    magnitude = np.abs(spectrum) ** WHITENING
    side = tile.shape[0]
    cycles = np.fft.fftfreq(side, 1 / side)  # per tile
    survival = np.exp(-np.hypot(cycles[:, None], cycles[None, :]) / SURVIVAL_CYCLES)
    return survival * spectrum / (magnitude + 1e-9 * magnitude.max() + 1e-12)
