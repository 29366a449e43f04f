"""Short-time band power and mel filterbank in NumPy/SciPy (no librosa: an STFT and a filterbank are short)."""

from __future__ import annotations

import numpy as np
import scipy.fft

from amg.core.errors import AmgError

WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_FFT = 512


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def band_bins(sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """Boolean mask of the FFT bins inside [fmin, fmax]."""
    if not 0.0 <= fmin < fmax <= sample_rate / 2:
        raise AmgError(f"Audio features: need 0 <= fmin < fmax <= {sample_rate / 2:g} Hz, got {fmin:g}-{fmax:g} Hz.")
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    return (freqs >= fmin) & (freqs <= fmax)


def mel_filterbank(n_mels: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, bins in band) triangular filters over the FFT bins of `band_bins`, each row summing to 1.

    Rows that sum to 1 make each band the mean power density under its triangle, so a flat spectrum gives
    the same value in every band: band levels do not depend on how many FFT bins a band spans.
    """
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)[band_bins(sample_rate, fmin, fmax)]
    edges = _hz(np.linspace(_mel(fmin), _mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    sums = weights.sum(axis=1, keepdims=True)
    if np.any(sums == 0):
        raise AmgError(
            f"Audio features: {n_mels} mel bands over {fmin:g}-{fmax:g} Hz are narrower than the "
            f"{sample_rate / N_FFT:.1f} Hz FFT resolution (some bands would be empty); use fewer bands."
        )
    return (weights / sums).astype(np.float32)


def power_spectrum(samples: np.ndarray, n_windows: int, first: int = 0) -> np.ndarray:
    """(n_windows, N_FFT//2+1) power per FFT bin of Hann windows `first`, `first` + 1, ...: window m is
    centred on sample m*HOP + HOP/2 of `samples`, the middle of the 10 ms it stands for.

    The audio is zero-padded where windows reach past either end (a live stream passes `first` > 0 and gets the
    same windows as the whole recording would). Scaled so that a row sums to the mean square of the windowed
    signal (Parseval), i.e. a full-scale sine gives 0.5 in its bin.
    """
    begin = first * HOP - (WINDOW // 2 - HOP // 2)  # the first window's first sample
    padded = np.zeros((n_windows - 1) * HOP + WINDOW, np.float32)
    lo, hi = max(begin, 0), min(begin + len(padded), len(samples))
    if hi > lo:
        padded[lo - begin : hi - begin] = samples[lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::HOP]
    window = np.hanning(WINDOW + 2)[1:-1].astype(np.float32)  # periodic-style Hann: no zero end points
    spectrum = scipy.fft.rfft(frames * window, n=N_FFT, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    # One-sided spectrum: every bin but DC and Nyquist stands for two (±f); normalise by the window's energy.
    power[:, 1:-1] *= 2.0
    return power / np.float32(N_FFT * np.sum(window**2))
