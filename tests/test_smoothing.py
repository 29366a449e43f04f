"""Temporal smoothing: jitter removed, mouth motion neither lagged nor flattened, short sequences handled."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from amg.tracking import topology
from amg.tracking.fitting import HeadPose
from amg.tracking.smoothing import (
    effective_window,
    jitter,
    lag_frames,
    peak_attenuation,
    smooth_landmarks,
    smooth_pose,
    smooth_series,
)

FPS = 25
N_POINTS = 478


def talking_landmarks(rng: np.random.Generator, n_frames: int = 200, hz: float = 4.0):
    """Static face whose inner lower lip opens and closes `hz` times a second by up to 20 px."""
    time = np.arange(n_frames) / FPS
    opening = 10.0 * (1.0 - np.cos(2 * np.pi * hz * time))
    landmarks = np.broadcast_to(rng.uniform(0, 256, (N_POINTS, 3)), (n_frames, N_POINTS, 3)).copy()
    landmarks[:, topology.INNER_LIP_VERTICAL_PAIRS.ravel(), :] = (128.0, 180.0, 0.0)
    landmarks[:, topology.INNER_LIP_VERTICAL_PAIRS[:, 1], 1] += opening[:, None]
    return landmarks


def test_effective_window_shrinks_to_the_sequence_and_skips_filters_that_would_not_smooth():
    assert effective_window(7, 100, 2) == 7
    assert effective_window(8, 100, 2) == 7
    assert effective_window(7, 6, 2) == 5
    assert effective_window(7, 4, 2) is None  # 3 frames fit a parabola exactly: nothing to smooth
    assert effective_window(3, 100, 2) is None
    assert effective_window(3, 100, 1) == 3


def test_smoothing_removes_white_jitter_from_a_slow_signal():
    rng = np.random.default_rng(0)
    time = np.arange(250) / FPS
    clean = np.stack([np.sin(2 * np.pi * 0.5 * time + phase) * 20 for phase in np.linspace(0, 3, 6)], axis=1)
    noisy = clean + rng.normal(0, 0.5, clean.shape)
    smoothed = smooth_series(noisy, window=7, polyorder=2)
    assert jitter(noisy) > 2 * jitter(smoothed)
    assert np.abs(smoothed - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


def test_mouth_window_keeps_a_fast_mouth_unlagged_and_unflattened():
    rng = np.random.default_rng(1)
    landmarks = talking_landmarks(rng)
    noisy = landmarks + rng.normal(0, 0.3, landmarks.shape)
    smoothed = smooth_landmarks(noisy, window=7, mouth_window=5, polyorder=2)
    reference = topology.mouth_opening(landmarks)
    opening = topology.mouth_opening(smoothed)
    assert lag_frames(reference, opening) == 0
    assert peak_attenuation(reference, opening) > 0.9
    # The long window alone would flatten the same motion visibly more: the split is what keeps the lips.
    long_only = topology.mouth_opening(smooth_landmarks(noisy, window=7, mouth_window=7, polyorder=2))
    assert peak_attenuation(reference, long_only) < peak_attenuation(reference, opening) - 0.1
    # Points away from the mouth still get the long window's jitter reduction.
    others = np.setdiff1d(np.arange(N_POINTS), topology.MOUTH)
    assert jitter(noisy[:, others]) > 2 * jitter(smoothed[:, others])


def test_lag_and_attenuation_measures_detect_a_causal_moving_average():
    time = np.arange(200) / FPS
    reference = np.sin(2 * np.pi * 2.0 * time)
    causal_mean = np.convolve(reference, np.ones(5) / 5)[: len(reference)]  # output t averages t-4..t
    assert lag_frames(reference, causal_mean) == 2
    assert lag_frames(reference, np.roll(reference, -3)) == -3
    fast = np.sin(2 * np.pi * 4.0 * time)
    three_tap = np.convolve(fast, np.ones(3) / 3, mode="same")
    assert peak_attenuation(fast, three_tap) == pytest.approx((1 + 2 * np.cos(2 * np.pi * 4 / FPS)) / 3, abs=0.02)
    assert peak_attenuation(fast, fast) == pytest.approx(1.0)


def test_windows_longer_than_the_sequence_do_not_crash():
    rng = np.random.default_rng(2)
    for n_frames in (1, 2, 3, 4, 5, 6):
        landmarks = rng.normal(size=(n_frames, N_POINTS, 3))
        smoothed = smooth_landmarks(landmarks, window=31, mouth_window=9, polyorder=2)
        assert smoothed.shape == landmarks.shape and np.isfinite(smoothed).all()
        if n_frames < 5:
            np.testing.assert_array_equal(smoothed, landmarks)  # nothing long enough to smooth with
        pose = HeadPose(
            Rotation.random(n_frames, random_state=n_frames).as_matrix(),
            rng.normal(size=(n_frames, 3)),
            rng.uniform(50, 60, n_frames),
            np.ones(n_frames, bool),
        )
        assert smooth_pose(pose, window=31).rotations.shape == (n_frames, 3, 3)


def test_smooth_series_rejects_gaps():
    tracks = np.zeros((20, 3))
    tracks[5, 1] = np.nan
    with pytest.raises(ValueError, match="interpolate"):
        smooth_series(tracks)


def test_smooth_pose_is_continuous_across_the_rotation_vector_wrap_and_removes_jitter():
    rng = np.random.default_rng(3)
    n_frames = 100
    # Yaw sweeping through 180 degrees, where rotation vectors flip sign: a naive filter would break here.
    clean_angles = np.radians(np.linspace(150, 210, n_frames))
    clean = Rotation.from_euler("y", clean_angles[:, None])
    noisy = clean * Rotation.from_rotvec(rng.normal(0, np.radians(0.5), (n_frames, 3)))
    translations = np.linspace(0, 30, n_frames)[:, None] * (1.0, 0.5, 0.0)
    scales = np.linspace(60, 66, n_frames)
    pose = HeadPose(
        noisy.as_matrix(),
        translations + rng.normal(0, 0.5, (n_frames, 3)),
        scales * np.exp(rng.normal(0, 0.01, n_frames)),
        np.ones(n_frames, bool),
    )
    smoothed = smooth_pose(pose, window=7, polyorder=2)

    error_noisy = (clean.inv() * noisy).magnitude()
    error_smoothed = (clean.inv() * Rotation.from_matrix(smoothed.rotations)).magnitude()
    assert error_smoothed.max() < np.radians(2.0)  # a filter broken by the wrap would be off by ~180
    assert error_smoothed.mean() < 0.7 * error_noisy.mean()
    assert jitter(smoothed.translations) < 0.5 * jitter(pose.translations)
    assert np.abs(smoothed.scales - scales).mean() < 0.7 * np.abs(pose.scales - scales).mean()
    assert np.array_equal(smoothed.valid, pose.valid)
