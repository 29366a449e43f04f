"""Zero-phase temporal smoothing of face tracks, and measures of what smoothing did (jitter, lag, attenuation).

Savitzky-Golay filters fit a low-order polynomial in a sliding window centred on each frame: the kernel is
symmetric, so nothing is delayed (zero phase), and peaks that a polynomial of that order can follow survive,
unlike a moving average that flattens them. The window sets the trade-off: long (7 frames) where motion is slow
(head pose, brows, face outline) to remove tracker jitter, short (5 frames) on the lips so that a fast closure
(a "p" or "b" lasts 2-3 frames at 25 fps) is neither lagged nor flattened.

Why the mouth default is 5, not 3: with polyorder 2 a 3-frame window fits a parabola through 3 points exactly,
so it returns the input unchanged; the shortest window that smooths at all is polyorder + 2. A 5-frame window of
order 2 keeps 93% of a 4 Hz open/close at 25 fps and removes about 30% of white tracker noise.

All inputs must be gap-free (interpolate frames without a face first, see `fitting.interpolate_invalid`).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import detrend, savgol_filter
from scipy.spatial.transform import Rotation

from amg.tracking import topology
from amg.tracking.fitting import HeadPose


def effective_window(window: int, n_frames: int, polyorder: int) -> int | None:
    """The window actually used: the largest odd length <= min(window, n_frames).

    None when that is shorter than polyorder + 2, because the polynomial would then pass through every sample
    (no smoothing) or not be determined at all.
    """
    length = min(window, n_frames)
    length -= 1 - length % 2
    return length if length >= polyorder + 2 else None


def smooth_series(x: np.ndarray, window: int = 7, polyorder: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing of tracks (T, ...) along time; returned unchanged if the window is too short.

    Edges use mode 'interp' (a polynomial fitted to the first/last window), which neither pads with invented
    samples nor lags at the ends.
    """
    x = np.asarray(x, float)
    length = effective_window(window, len(x), polyorder)
    if length is None:
        return x.copy()
    if not np.isfinite(x).all():
        raise ValueError("Tracks to smooth contain NaN or inf: interpolate frames without a face first.")
    return savgol_filter(x, length, polyorder, axis=0, mode="interp")


def smooth_landmarks(
    landmarks: np.ndarray,
    window: int = 7,
    mouth_window: int = 5,
    polyorder: int = 2,
    mouth_idx: np.ndarray = topology.MOUTH,
) -> np.ndarray:
    """Landmarks (T, N, 3) smoothed with `window`, except the mouth points, which get `mouth_window`."""
    landmarks = np.asarray(landmarks, float)
    smoothed = smooth_series(landmarks, window, polyorder)
    smoothed[:, mouth_idx] = smooth_series(landmarks[:, mouth_idx], mouth_window, polyorder)
    return smoothed


def smooth_pose(pose: HeadPose, window: int = 7, polyorder: int = 2) -> HeadPose:
    """Head pose smoothed channel-wise: rotation vectors, translations, and log-scales.

    Rotation vectors jump where the rotation angle crosses pi (the axis flips); filtering across such a jump
    would produce nonsense. Rotations are therefore taken relative to the sequence's mean rotation: a head
    stays far less than 180 degrees from its own mean pose, so these relative rotation vectors are continuous.
    Scale is smoothed in log space because it is multiplicative (zoom).
    """
    rotations = Rotation.from_matrix(pose.rotations)
    reference = rotations.mean()
    relative = (reference.inv() * rotations).as_rotvec()
    smoothed = reference * Rotation.from_rotvec(smooth_series(relative, window, polyorder))
    return HeadPose(
        rotations=smoothed.as_matrix(),
        translations=smooth_series(pose.translations, window, polyorder),
        scales=np.exp(smooth_series(np.log(pose.scales), window, polyorder)),
        valid=pose.valid.copy(),
    )


def jitter(x: np.ndarray) -> float:
    """Mean size of the second temporal difference `x[t+1] - 2 x[t] + x[t-1]`.

    For (T,) signals the absolute value; for (T, ..., D) tracks the Euclidean norm over the last axis (one
    point's coordinates), averaged over points and frames. Smooth motion has a small second difference, frame
    to frame tracker noise a large one, so this measures jitter with little influence from real movement.
    """
    x = np.asarray(x, float)
    second_difference = x[2:] - 2.0 * x[1:-1] + x[:-2]
    if x.ndim == 1:
        return float(np.abs(second_difference).mean())
    return float(np.linalg.norm(second_difference, axis=-1).mean())


def lag_frames(reference: np.ndarray, smoothed: np.ndarray, max_lag: int = 5) -> int:
    """Delay of `smoothed` behind `reference` in frames, by normalised cross-correlation of (T,) signals.

    Positive: smoothed[t] resembles reference[t - lag] (a causal filter's lag); 0: no lag. On equal
    correlation the smaller |lag| wins.
    """
    reference = np.asarray(reference, float) - np.mean(reference)
    smoothed = np.asarray(smoothed, float) - np.mean(smoothed)
    n = len(reference)
    lags = sorted(range(-max_lag, max_lag + 1), key=abs)
    correlations = [
        _normalised_correlation(reference[: n - lag], smoothed[lag:])
        if lag >= 0
        else _normalised_correlation(reference[-lag:], smoothed[: n + lag])
        for lag in lags
    ]
    return lags[int(np.argmax(correlations))]


def _normalised_correlation(a: np.ndarray, b: np.ndarray) -> float:
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def peak_attenuation(reference: np.ndarray, smoothed: np.ndarray) -> float:
    """Amplitude kept by smoothing a (T,) signal such as the mouth opening: 1 = untouched, < 1 = flattened.

    The ratio of the standard deviations of the two signals after removing each one's linear trend (a slow
    drift, e.g. the face moving closer, would otherwise dominate both and hide the loss on the fast motion).
    For a sinusoid this is exactly the filter's gain at its frequency.
    """
    reference_spread = np.std(detrend(np.asarray(reference, float)))
    if reference_spread == 0:
        raise ValueError("The reference signal is constant: attenuation is undefined.")
    return float(np.std(detrend(np.asarray(smoothed, float))) / reference_spread)
