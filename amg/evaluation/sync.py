"""Offline audio-visual sync: does a face's mouth move with the speech, and how many frames off?

A small per-avatar model, fitted on the avatar's own real footage, predicts three mouth signals (opening, width,
inner-lip area) from the speech features of amg.audio (what is said, normalised per utterance so that voices
and channels look alike); the frame-to-frame changes of the prediction are then correlated with those of the
signals measured on other footage of that avatar (held-out real frames, or generated frames whose landmarks were
re-detected) over a range of lags. No downloaded weights: it works for any person, at the price of a fit per
avatar on its training footage (a few seconds is too little: 15 s or more).

Why not simply the energy envelope against the mouth opening: on real footage that hardly tells in-sync from
unrelated speech (AUC 0.55; the lips close in some loud sounds and open in some quiet ones), where this measure
reaches 0.98 on 5 s segments. benchmarks/sync_validation.py holds the validation (own, shifted, re-voiced and
unrelated audio on real clips) and the ablation that chose the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amg.audio.features import AudioFeatures
from amg.core.fsutil import NpzRecord
from amg.tracking.topology import LEFT_EYE_OUTER, LIPS_INNER, RIGHT_EYE_OUTER, mouth_opening, mouth_width

# Chosen on the real clips of benchmarks/sync_validation.py (its --ablation table; AUC in sync vs unrelated,
# own voice / changed voice): mel and embedding together 0.98 / 0.97, the embedding alone 0.91 / 0.89, mel
# alone 0.94 / 0.91; a +-3 frame window beats +-1 (0.94 / 0.90) and +-5 (0.97 / 0.96); alpha 0.3 to 30 hardly
# matters (0.98 / 0.93-0.97).
DEFAULT_BLOCKS = "mel,embedding,vad,energy"
DEFAULT_CONTEXT = 3  # audio frames either side of the predicted frame
DEFAULT_ALPHA = 3.0  # ridge penalty per training frame, on standardised features
# A signal's spread below this (in its own units) carries no motion to correlate: its correlation reads 0.
_MIN_STD = 1e-6


def inner_lip_area(landmarks: np.ndarray) -> np.ndarray:
    """Area enclosed by the inner lip ring, (T, N, D) -> (T,), in squared landmark units (x, y only).

    The shoelace formula over LIPS_INNER, which is in polygon order; the mouth's opening in one number that,
    unlike the midline gap, also sees the corners part.
    """
    ring = landmarks[:, LIPS_INNER, :2]
    x, y = ring[..., 0], ring[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def mouth_signals(landmarks: np.ndarray) -> np.ndarray:
    """(T, N, 2 or 3) face-mesh landmarks -> (T, 3) mouth opening, width and inner-lip area, free of scale.

    Lengths are divided by the inter-ocular distance (outer eye corners 33-263) and the area by its square, so a
    128 px generated frame and a 512 px crop of the same face give the same values. Only x and y are used:
    MediaPipe's depth is a guess, and ignoring it makes 2-D and 3-D landmarks agree. Frames with NaN landmarks
    give NaN rows.
    """
    xy = np.asarray(landmarks, np.float64)[..., :2]
    ocular = np.linalg.norm(xy[:, LEFT_EYE_OUTER] - xy[:, RIGHT_EYE_OUTER], axis=-1)
    ocular = np.where(ocular > 0, ocular, np.nan)
    return np.stack([mouth_opening(xy) / ocular, mouth_width(xy) / ocular, inner_lip_area(xy) / ocular**2], axis=1)


def _windows(values: np.ndarray, context: int) -> np.ndarray:
    """(T, D) -> (T, (2 * context + 1) * D): each frame with its neighbours, edge frames repeated.

    The mouth anticipates and trails the sound it makes, so a frame's shape depends on the audio around it.
    """
    padded = np.pad(values, ((context, context), (0, 0)), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * context + 1, axis=0).reshape(len(values), -1)


def _inputs(features: AudioFeatures, blocks: str, context: int) -> np.ndarray:
    """(T, W) regression inputs: the chosen blocks (a comma list) of each frame's window."""
    chosen = np.concatenate([features.block(name) for name in blocks.split(",")], axis=1)
    return _windows(chosen.astype(np.float64), context)


def _valid_rows(signals: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """(T,) bool: frames marked valid (all if None) whose signals are all finite."""
    finite = np.isfinite(signals).all(axis=1)
    return finite if valid is None else finite & np.asarray(valid, bool)


@dataclass
class SyncModel(NpzRecord):
    """Ridge regression from a window of audio features to the standardised mouth signals of one avatar."""

    blocks: str  # comma list of AudioFeatures blocks used, in order
    context: int  # audio frames either side
    feature_mean: np.ndarray  # (W,) of the windowed features over the training frames
    feature_std: np.ndarray  # (W,)
    weights: np.ndarray  # (W, 3) standardised features -> standardised signals

    def __post_init__(self) -> None:
        self.blocks = str(self.blocks)  # NpzRecord.load gives a 0-d array

    @classmethod
    def fit(
        cls,
        features: AudioFeatures,
        signals: np.ndarray,
        valid: np.ndarray | None = None,
        blocks: str = DEFAULT_BLOCKS,
        context: int = DEFAULT_CONTEXT,
        alpha: float = DEFAULT_ALPHA,
    ) -> SyncModel:
        """Fit on an avatar's real frames: speech `features`, row-aligned `signals` (T, 3) from mouth_signals.

        Frames not `valid` (T,) (e.g. Tracks.tracked) or with a NaN signal are left out. `alpha` is per
        training frame, so the same value regularises a short clip and a long one alike.
        """
        rows = _valid_rows(signals, valid)
        if rows.sum() < 2:
            raise ValueError("SyncModel.fit needs at least two valid frames")
        inputs = _inputs(features, blocks, context)[rows]
        mean, std = inputs.mean(axis=0), np.maximum(inputs.std(axis=0), _MIN_STD)
        x = (inputs - mean) / std
        target = signals[rows]
        y = (target - target.mean(axis=0)) / np.maximum(target.std(axis=0), _MIN_STD)
        weights = np.linalg.solve(x.T @ x + alpha * len(x) * np.eye(x.shape[1]), x.T @ y)
        return cls(blocks, context, mean, std, weights)

    def predict(self, features: AudioFeatures) -> np.ndarray:
        """(T, 3) predicted mouth signals, in standard deviations of the training footage's signals."""
        x = (_inputs(features, self.blocks, self.context) - self.feature_mean) / self.feature_std
        return x @ self.weights


@dataclass
class SyncResult:
    """How a face's mouth follows its speech.

    offset: the lag (frames, 25 fps) of the best correlation; positive = the mouth moves LATER than the speech.
    peak: the correlation at that lag (mean Pearson r of the three signals' frame-to-frame changes).
    confidence: peak minus the median correlation over all lags, as SyncNet's confidence (its median distance
        minus its minimum): how much the best alignment stands out from arbitrary ones, so footage correlated at
        every lag earns nothing. On 5 s of real footage it averaged 0.38 in sync and 0.17 with unrelated speech
        (the best of 31 chance correlations), and 95 % of unrelated windows stayed below about 0.27; longer
        footage lowers the chance level. Without usable frames every lag reads 0, and so does the confidence.
    lags, correlation: the whole curve, for plots.
    """

    offset: int
    confidence: float
    peak: float
    lags: np.ndarray
    correlation: np.ndarray


def lagged_correlation(reference: np.ndarray, follower: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of reference[t] and follower[t + lag] over the frames both have, for lag in -max_lag..max_lag.

    (T,) or (T, K) inputs; NaN frames are left out of each lag's correlation, and with K columns the r of
    column k against column k are averaged. A peak at lag > 0 means the follower lags behind the reference.
    Returns (lags, correlation), both (2 * max_lag + 1,).
    """
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    fol = np.asarray(follower, np.float64).reshape(len(follower), -1)
    if ref.shape != fol.shape:
        raise ValueError(f"lagged_correlation needs inputs of the same shape, got {ref.shape} and {fol.shape}")
    padded = np.pad(fol, ((max_lag, max_lag), (0, 0)), constant_values=np.nan)
    shifted = np.lib.stride_tricks.sliding_window_view(padded, len(fol), axis=0)  # (L, K, T): fol[t + lag]
    both = np.isfinite(ref.T)[None] & np.isfinite(shifted)
    count = np.maximum(both.sum(axis=-1, keepdims=True), 1)

    def centred(x: np.ndarray) -> np.ndarray:
        x = np.where(both, x, 0.0)
        return np.where(both, x - x.sum(axis=-1, keepdims=True) / count, 0.0)

    a, b = centred(ref.T[None]), centred(shifted)
    std_a, std_b = (np.sqrt((x * x).sum(axis=-1) / count[..., 0]) for x in (a, b))
    flat = (std_a < _MIN_STD) | (std_b < _MIN_STD)
    r = np.where(flat, 0.0, (a * b).sum(axis=-1) / count[..., 0] / np.where(flat, 1.0, std_a * std_b))
    return np.arange(-max_lag, max_lag + 1), r.mean(axis=1)


def sync_from_correlation(lags: np.ndarray, correlation: np.ndarray) -> SyncResult:
    """Offset, peak and confidence of a lag curve (see SyncResult)."""
    best = int(np.argmax(correlation))
    peak = float(correlation[best])
    return SyncResult(int(lags[best]), peak - float(np.median(correlation)), peak, lags, correlation)


def measure_sync(
    model: SyncModel, features: AudioFeatures, signals: np.ndarray, max_lag: int = 15, valid: np.ndarray | None = None
) -> SyncResult:
    """Sync of measured mouth `signals` (T, 3, from mouth_signals) with the speech `features` (T rows).

    The frame-to-frame changes of the model's prediction from the speech and of the measured signals are
    correlated at lags up to +-max_lag frames. Changes, not levels: over a few seconds, slow drifts (a head turn
    narrowing the mouth, a smile) correlate with almost anything, while articulation lives in the changes (AUC
    in sync vs unrelated 0.98, against 0.87 on levels).
    Each signal's scale and mean drop out (Pearson r), so generated footage need not match the real footage's
    amplitude. Frames not `valid` or with NaN signals are ignored.
    """
    measured = np.where(_valid_rows(signals, valid)[:, None], signals, np.nan)
    predicted = model.predict(features)
    return sync_from_correlation(*lagged_correlation(np.diff(predicted, axis=0), np.diff(measured, axis=0), max_lag))
