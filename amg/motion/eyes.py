"""Eyes, brows and gaze: the part of the face speech does not drive, from a stochastic model of the avatar's tracks.

Audio→Expression regresses the whole expression from speech, so what speech does not explain (blinks, gaze,
brow raises) averages out to a fixed stare. The expression is therefore split in two through the face model's
basis: the upper face (lids, brows, irises) and the rest (mouth, jaw, cheeks). Speech keeps the rest; this model
makes the upper face:

- blinks: a renewal process with gamma-distributed intervals whose rate and regularity are the video's, on a
  clock that runs faster in pauses when the video's own blinks favour pauses; every blink is one of the video's
  blinks (its whole upper-face trajectory), so shapes and durations are the person's own;
- drift: the slow motion of brows, lids and gaze between blinks, as first-order autoregressive processes on the
  upper face's principal components, with the video's variance and frame-to-frame correlation; a component that
  follows the speech energy in the video (brows rising on emphasis) follows the driving speech's energy.

The split is made on the head-frame landmarks, not on the expression coefficients: the face model's principal
components mix eyes and mouth (the first ones are whole-face motions), so no change of coefficients moves the
lids without moving the lips. A smooth per-point weight takes the upper face from this model and the rest from
speech; the coefficients are then the shapes' projection onto the basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from amg.audio.features import AudioFeatures
from amg.config import FPS, EyesConfig
from amg.core.fsutil import NpzRecord
from amg.tracking import fitting, smoothing, topology
from amg.tracking.tracks import Tracks

# Where the upper face starts and ends on the mouth-to-eyes axis (0 at the mouth, 1 at eye level): from about the
# nose tip (its wings follow the upper lip) to just under the lower lids (the cheek there lifts in a blink).
LOWER_EDGE, UPPER_EDGE = 0.45, 0.8
# The speech energy is compared with the face over ±0.2 s: brows rise with a stressed phrase, not a syllable.
ENERGY_SMOOTHING = 11


def upper_face_weights(neutral: np.ndarray) -> np.ndarray:
    """(N,) how much each point of the head-frame `neutral` shape belongs to the upper face: 1 from just below
    the eyes up, 0 from just below the nose down, smooth in between (a hard cut would tear the cheeks)."""
    eyes = neutral[np.concatenate([topology.EYES, topology.BROWS])].mean(axis=0)
    mouth = neutral[topology.LIPS].mean(axis=0)
    axis = eyes - mouth
    height = (neutral - mouth) @ axis / (axis @ axis)  # 0 at the mouth, 1 at eye level
    x = np.clip((height - LOWER_EDGE) / (UPPER_EDGE - LOWER_EDGE), 0, 1)
    return x * x * (3 - 2 * x)  # smoothstep


def with_upper_face(shapes: np.ndarray, upper: np.ndarray, points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Head-frame shapes (T, N, 3) whose points `points` are moved towards `upper` (T, P, 3) by `weights` (P,):
    the mouth, jaw and cheeks of `shapes`, the lids, brows and gaze of `upper`."""
    out = shapes.copy()
    w = weights[None, :, None]
    out[:, points] = (1 - w) * shapes[:, points] + w * upper
    return out


def speech_with_upper_face(face_model: fitting.ExpressionModel, speech: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Head-frame shapes (T, N, 3): the mouth, jaw and cheeks of shapes `speech` (T, N, 3), the upper face of
    coefficients `upper` (T, K) (say, the tracked eyes of real frames under a predicted mouth)."""
    weights = upper_face_weights(face_model.neutral)
    points = np.flatnonzero(weights > 0)
    return with_upper_face(speech, fitting.decode(face_model, upper)[:, points], points, weights[points])


def blink_runs(opening: np.ndarray, median: float, ratio: float, max_frames: int) -> np.ndarray:
    """(B, 2) start and stop frames of the blinks in an eye-opening series: runs below `ratio` × the open-eye
    `median`, at most `max_frames` long (a longer closure is looking down or resting the eyes, not a blink)."""
    closed = np.concatenate([[False], np.nan_to_num(opening, nan=np.inf) < ratio * median, [False]])
    edges = np.flatnonzero(np.diff(closed.astype(np.int8)))
    runs = edges.reshape(-1, 2)
    return runs[(runs[:, 1] - runs[:, 0]) <= max_frames]


def blink_statistics(opening: np.ndarray, median: float, cfg: EyesConfig) -> dict[str, float]:
    """Blinks per minute and median blink duration (frames) of an eye-opening series, with its quantiles."""
    runs = blink_runs(opening, median, cfg.blink_ratio, cfg.max_blink_frames)
    q = np.nanquantile(opening, [0.01, 0.05, 0.25, 0.5, 0.75]) if np.isfinite(opening).any() else [np.nan] * 5
    return {
        "blinks_per_minute": len(runs) / (len(opening) / FPS / 60),
        "blink_frames_median": float(np.median(runs[:, 1] - runs[:, 0])) if len(runs) else float("nan"),
        "opening_min": float(np.nanmin(opening)) if np.isfinite(opening).any() else float("nan"),
        **{f"opening_q{int(p * 100):02d}": float(v) for p, v in zip((0.01, 0.05, 0.25, 0.5, 0.75), q)},
    }


def speech_energy(features: AudioFeatures) -> np.ndarray | None:
    """(T,) the speech energy smoothed over ±0.2 s, or None when the features have no energy block."""
    if "energy" not in features.blocks:
        return None
    return smoothing.smooth_series(features.block("energy")[:, :1].astype(float), ENERGY_SMOOTHING, 1)[:, 0]


def pause_frames(vad: np.ndarray) -> np.ndarray:
    """(T,) bool: no speech over ±0.2 s (a pause or a phrase boundary)."""
    return smoothing.smooth_series(vad[:, None].astype(float), ENERGY_SMOOTHING, 1)[:, 0] < 0.5


@dataclass
class EyeModel(NpzRecord):
    """The avatar's eyes, brows and gaze, fitted on its tracked training frames (see the module docstring).
    Upper-face vectors are the head-frame coordinates of `points`, flattened (P*3)."""

    points: np.ndarray  # (P,) landmark indices of the upper face (weight > 0)
    weights: np.ndarray  # (P,) see upper_face_weights
    mean: np.ndarray  # (P*3,) the upper face between blinks
    drift_axes: np.ndarray  # (C, P*3) principal directions of the upper face between blinks
    drift_std: np.ndarray  # (C,) stationary standard deviation of each drift process (energy part removed)
    drift_rho: np.ndarray  # (C,) frame-to-frame correlation of each drift process
    drift_energy: np.ndarray  # (C,) slope on the standardised speech energy (0 where the video shows no link)
    energy_mean: float
    energy_std: float
    energy_range: np.ndarray  # (2,) lowest and highest standardised energy of the training frames
    blink_shapes: np.ndarray  # (sum of lengths, P*3) the video's blinks, as changes from the open upper face
    blink_lengths: np.ndarray  # (B,) frames of each blink shape
    blink_pad: int  # frames each shape starts before the lids cross the blink threshold
    blinks_per_minute: float
    interval_shape: float  # gamma shape of the intervals: 1 is a Poisson process, larger is more regular
    pause_gain: float  # how much likelier a blink is in a pause than during speech
    open_median: float  # median eye opening of the training frames (the blink threshold's reference)

    @property
    def n_blinks(self) -> int:
        return len(self.blink_lengths)

    @classmethod
    def fit(
        cls,
        tracks: Tracks,
        face_model: fitting.ExpressionModel,
        features: AudioFeatures,
        frames: slice,
        cfg: EyesConfig,
    ) -> "EyeModel":
        weights = upper_face_weights(face_model.neutral)
        points = np.flatnonzero(weights > 0)
        upper = fitting.decode(face_model, tracks.expression[frames])[:, points].reshape(-1, len(points) * 3)
        opening = topology.eye_opening(tracks.landmarks[frames])
        median = float(np.nanmedian(opening))
        runs = blink_runs(opening, median, cfg.blink_ratio, cfg.max_blink_frames)
        shapes, in_blink = _blink_shapes(upper, runs, cfg.blink_pad)
        mean = upper[~in_blink].mean(axis=0)
        shapes = [_deepened(shape, mean, points, len(weights), median, cfg.blink_depth) for shape in shapes]
        lengths = np.array([len(shape) for shape in shapes], np.int64)
        shapes = np.concatenate(shapes) if shapes else np.zeros((0, len(mean)))
        energy = speech_energy(features.take(frames))
        drift = _fit_drift(upper - mean, in_blink, energy, cfg)
        minutes = len(upper) / FPS / 60
        return cls(
            points=points,
            weights=weights[points],
            mean=mean,
            **drift,
            blink_shapes=shapes,
            blink_lengths=lengths,
            blink_pad=cfg.blink_pad,
            blinks_per_minute=len(runs) / minutes,
            interval_shape=_interval_shape(runs[:, 0], cfg),
            open_median=median,
            pause_gain=_pause_gain(runs[:, 0], pause_frames(features.vad[frames]), cfg),
        )

    def animate(
        self, shapes: np.ndarray, features: AudioFeatures, seed: int = 0, blink_rate: float = 1.0
    ) -> np.ndarray:
        """Head-frame shapes (T, N, 3) made from speech, with the upper face replaced by a sample of this model."""
        upper = self.sample(features, seed, blink_rate).reshape(len(shapes), -1, 3)
        return with_upper_face(shapes, upper, self.points, self.weights)

    def sample(self, features: AudioFeatures, seed: int = 0, blink_rate: float = 1.0) -> np.ndarray:
        """(T, P*3) the upper face for the frames of `features`: drift, and blinks at `blink_rate` × the avatar's
        own rate (0: none)."""
        return EyeAnimator(self, seed, blink_rate).advance(pause_frames(features.vad), speech_energy(features))


class EyeAnimator:
    """The eye model's upper face frame by frame: causal (a frame depends on the speech up to it only) and the
    same however the frames are cut into chunks, so a live stream and a file get the same eyes for one seed.

    Blinks start at the onsets of a renewal process: intervals of a dead time (one blink, so blinks never run
    into each other) plus a gamma variable, with the video's mean rate and regularity, counted on a clock that
    ticks `pause_gain` times faster in pauses, normalised by its mean speed so far so that the mean rate stays
    the video's. The first interval starts at a random phase, so a render does not always open with a blink.
    A blink's shape starts at its onset (with the lids starting to close `blink_pad` frames later).
    """

    def __init__(self, model: EyeModel, seed: int = 0, blink_rate: float = 1.0):
        self.model = model
        # One generator per process, so that the drift's draws and the blinks' never interleave by chunking.
        drift_seed, blink_seed = np.random.SeedSequence(seed).spawn(2)
        self.drift_rng, self.blink_rng = np.random.default_rng(drift_seed), np.random.default_rng(blink_seed)
        # Each process one frame before the first, from its stationary distribution.
        self.drift = self.drift_rng.normal(0, 1, len(model.drift_std)) * model.drift_std
        self.rate = model.blinks_per_minute * blink_rate if model.n_blinks else 0.0
        self.starts = np.concatenate([[0], np.cumsum(model.blink_lengths)])
        self.longest = int(model.blink_lengths.max()) if model.n_blinks else 0
        self.dead_time = self.longest + 2
        self.frame = 0
        self.clock = 0.0
        self.speed_sum = 0.0
        self.last_onset = -(10**9)
        self.onsets: list[int] = []  # every blink so far (a few a minute)
        self.next_onset = self._interval() * self.blink_rng.uniform() if self.rate > 0 else np.inf
        self.pending = np.zeros((self.longest, len(model.mean)))  # blink shapes reaching past the last chunk

    def _interval(self) -> float:
        mean_interval = FPS * 60 / self.rate
        shape = self.model.interval_shape
        return self.dead_time + self.blink_rng.gamma(shape, max(mean_interval - self.dead_time, 1.0) / shape)

    def advance(self, pauses: np.ndarray, energy: np.ndarray | None) -> np.ndarray:
        """(n, P*3) the upper face of the next n frames, given whether each is a pause and its speech energy."""
        n = len(pauses)
        upper = self.model.mean + self._drift(n, energy) @ self.model.drift_axes
        if self.rate > 0:
            upper += self._blinks(pauses)
        self.frame += n
        return upper

    def _drift(self, n: int, energy: np.ndarray | None) -> np.ndarray:
        """(n, C) AR(1) processes continued from the last frame, plus the energy-linked part."""
        m = self.model
        noise = self.drift_rng.standard_normal((n, len(m.drift_std)))  # frame-major: chunking keeps the order
        z = np.empty_like(noise)
        for k, (std, rho) in enumerate(zip(m.drift_std, m.drift_rho)):
            z[:, k] = lfilter([std * np.sqrt(1 - rho**2)], [1, -rho], noise[:, k], zi=[rho * self.drift[k]])[0]
        if n:
            self.drift = z[-1].copy()
        if energy is not None and m.energy_std > 0:
            # Within the range the link was seen in: a long silence is quieter than any pause of the video.
            e = np.clip((energy - m.energy_mean) / m.energy_std, *m.energy_range)
            z = z + e[:, None] * m.drift_energy
        return z

    def _blinks(self, pauses: np.ndarray) -> np.ndarray:
        """(n, P*3) the blink shapes over the next n frames (those started before included)."""
        n, m = len(pauses), self.model
        speed = np.where(pauses, m.pause_gain, 1.0)
        mean_speed = (self.speed_sum + np.cumsum(speed)) / (self.frame + 1 + np.arange(n))
        clock = self.clock + np.cumsum(speed / mean_speed)
        self.speed_sum += float(speed.sum())
        if n:
            self.clock = float(clock[-1])
        out = np.zeros((n + self.longest, len(m.mean)))
        out[: self.longest] += self.pending
        while (onset := int(np.searchsorted(clock, self.next_onset))) < n:
            which = self.blink_rng.integers(m.n_blinks)
            # The clock runs faster than the frames in pauses: a blink too close to the last one is dropped.
            if self.frame + onset - self.last_onset >= self.dead_time:
                shape = m.blink_shapes[self.starts[which] : self.starts[which + 1]]
                out[onset : onset + len(shape)] += shape
                self.last_onset = self.frame + onset
                self.onsets.append(self.last_onset)
            self.next_onset += self._interval()
        self.pending = out[n:]
        return out[:n]


def _blink_shapes(upper: np.ndarray, runs: np.ndarray, pad: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each blink's upper-face trajectory from `pad` frames before to `pad` after, minus the straight line
    between its ends (what the face does anyway), and the frames the blinks cover."""
    in_blink = np.zeros(len(upper), bool)
    shapes = []
    for start, stop in runs:
        lo, hi = start - pad, stop + pad
        in_blink[max(lo, 0) : hi] = True
        if lo < 0 or hi > len(upper):
            continue  # cut by the stretch's edge: its baseline is unknown
        window = upper[lo:hi]
        ramp = np.linspace(0, 1, len(window))[:, None]
        shapes.append(window - (window[0] + ramp * (window[-1] - window[0])))
    return shapes, in_blink


def _deepened(
    shape: np.ndarray, mean: np.ndarray, points: np.ndarray, n_points: int, median: float, depth: float
) -> np.ndarray:
    """`shape`, scaled so that on the mean upper face its eyes close to at most `depth` × the median opening.

    Blinks are found as dips under the blink ratio; a shape that only just crossed it on its own frame would,
    pasted onto a face that drifts slightly more open, often not close at all (selection on crossing makes the
    pasted blinks shallower on average than the ones counted). At 25 fps such a dip is a full blink sampled
    off its deepest instant, so it is deepened, not dropped.
    """
    shapes = np.zeros((len(shape), n_points, 3))
    shapes[:, points] = (mean + shape).reshape(len(shape), -1, 3)
    lowest = topology.eye_opening(shapes).min() / median
    if lowest <= depth:
        return shape
    return shape * (1 - depth) / max(1 - lowest, 1e-3)


def _fit_drift(centred: np.ndarray, in_blink: np.ndarray, energy: np.ndarray | None, cfg: EyesConfig) -> dict:
    """Principal axes of the upper face between blinks, and per axis an AR(1) process and an energy slope."""
    _, _, vt = np.linalg.svd(centred[~in_blink], full_matrices=False)
    axes = vt[: cfg.drift_components]
    z = centred @ axes.T
    # Blinks are not drift: bridge them by interpolation so the frame-to-frame correlation is not broken there.
    t = np.arange(len(z))
    z = np.stack([np.interp(t, t[~in_blink], column[~in_blink]) for column in z.T], axis=1)
    slopes = np.zeros(len(axes))
    energy_mean, energy_std, energy_range = 0.0, 0.0, np.zeros(2)
    if energy is not None and energy.std() > 1e-6:
        energy_mean, energy_std = float(energy.mean()), float(energy.std())
        e = (energy - energy_mean) / energy_std
        energy_range = np.array([e.min(), e.max()])
        corr = np.array([np.corrcoef(e, column)[0, 1] if column.std() > 0 else 0.0 for column in z.T])
        slopes = np.where(np.abs(corr) >= cfg.min_energy_corr, z.T @ e / len(e), 0.0)
        z = z - e[:, None] * slopes
    rho = np.array([np.clip(np.corrcoef(c[1:], c[:-1])[0, 1], 0, cfg.max_rho) if c.std() > 0 else 0.0 for c in z.T])
    return {
        "drift_axes": axes,
        "drift_std": z.std(axis=0),
        "drift_rho": rho,
        "drift_energy": slopes,
        "energy_mean": energy_mean,
        "energy_std": energy_std,
        "energy_range": energy_range,
    }


def _interval_shape(onsets: np.ndarray, cfg: EyesConfig) -> float:
    """Gamma shape 1/CV² of the intervals between blinks, bounded (few intervals give a noisy estimate)."""
    intervals = np.diff(onsets)
    if len(intervals) < 4:
        return cfg.min_interval_shape
    return float(np.clip((intervals.mean() / intervals.std()) ** 2, cfg.min_interval_shape, cfg.max_interval_shape))


def _pause_gain(onsets: np.ndarray, pauses: np.ndarray, cfg: EyesConfig) -> float:
    """Odds ratio of a blink starting in a pause rather than in speech, shrunk towards 1 (add-one smoothing)
    and bounded: only where the video's blinks show the tendency is it there."""
    in_pause = pauses[onsets].sum() if len(onsets) else 0
    pause_fraction = pauses.mean()
    if not 0.05 < pause_fraction < 0.95:
        return 1.0
    odds_blinks = (in_pause + 1) / (len(onsets) - in_pause + 1)
    odds_frames = pause_fraction / (1 - pause_fraction)
    return float(np.clip(odds_blinks / odds_frames, 1.0, cfg.max_pause_gain))
