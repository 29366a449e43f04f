"""amg.evaluation.sync on synthetic speech and mouths whose true offset is known (real clips:
benchmarks/sync_validation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from amg.audio import AudioFeatures
from amg.evaluation.sync import SyncModel, lagged_correlation, measure_sync, mouth_signals
from amg.tracking.topology import LEFT_EYE_OUTER, LIPS_INNER, NUM_LANDMARKS_REFINED, RIGHT_EYE_OUTER

BLOCKS = {"mel": slice(0, 8), "embedding": slice(8, 16), "vad": slice(16, 17), "energy": slice(17, 18)}
TRAIN, TEST, MARGIN = 600, 200, 20


def smooth_noise(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    """Noise smoothed over a few frames, like speech features and mouth motion at 25 fps."""
    kernel = np.hanning(7) / np.hanning(7).sum()
    noise = rng.normal(size=(n + 6, dims))
    return np.stack([np.convolve(col, kernel, mode="valid") for col in noise.T], axis=1)


def features(values: np.ndarray) -> AudioFeatures:
    return AudioFeatures(values.astype(np.float32), BLOCKS, values[:, BLOCKS["vad"].start].astype(np.float32))


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic speech features (T, 18) and the mouth signals (T, 3) they drive, plus a little tracker noise."""
    rng = np.random.default_rng(0)
    n = MARGIN + TRAIN + TEST + MARGIN
    speech = smooth_noise(rng, n, 18)
    mouth = speech @ rng.normal(size=(18, 3)) + 0.3 * rng.normal(size=(n, 3))
    return speech, mouth


@pytest.fixture(scope="module")
def model(world) -> SyncModel:
    speech, mouth = world
    train = slice(MARGIN, MARGIN + TRAIN)
    return SyncModel.fit(features(speech[train]), mouth[train])


def held_out(world, lag: int) -> tuple[AudioFeatures, np.ndarray]:
    """Held-out speech and the mouth signals `lag` frames later than it (mouth[t] shows speech[t - lag])."""
    speech, mouth = world
    start = MARGIN + TRAIN
    return features(speech[start : start + TEST]), mouth[start - lag : start - lag + TEST]


@pytest.mark.parametrize("lag", [0, 4, -4, 9, -9])
def test_offset_is_the_lag_of_the_mouth_behind_the_speech(world, model, lag):
    audio, signals = held_out(world, lag)
    result = measure_sync(model, audio, signals)
    assert result.offset == lag
    assert result.peak == pytest.approx(result.correlation.max())
    assert result.peak > 0.5 and result.confidence > 0.4
    assert np.array_equal(result.lags, np.arange(-15, 16))


def test_unrelated_speech_gets_far_lower_confidence(world, model):
    audio, signals = held_out(world, 0)
    in_sync = measure_sync(model, audio, signals).confidence
    rng = np.random.default_rng(1)
    unrelated = [measure_sync(model, features(smooth_noise(rng, TEST, 18)), signals).confidence for _ in range(10)]
    assert max(unrelated) < 0.5 * in_sync


def test_nan_and_invalid_frames_are_ignored(world, model):
    speech, mouth = world
    audio, signals = held_out(world, 3)
    gappy = signals.copy()
    gappy[50:70] = np.nan
    assert measure_sync(model, audio, gappy).offset == 3
    # invalid frames hold garbage; marking them must restore the answer the garbage spoils
    garbage = signals.copy()
    garbage[20:60] = garbage[120:160] = np.random.default_rng(2).normal(0, 50, size=(40, 3))
    valid = np.ones(TEST, bool)
    valid[20:60] = valid[120:160] = False
    assert measure_sync(model, audio, garbage).offset != 3
    assert measure_sync(model, audio, garbage, valid=valid).offset == 3
    # fitting skips them too: garbage on the training frames marked invalid changes nothing
    train = slice(MARGIN, MARGIN + TRAIN)
    spoiled = mouth[train].copy()
    spoiled[:100] = np.nan
    spoiled[100:200] = 1e3
    frame = np.arange(TRAIN)
    refit = SyncModel.fit(features(speech[train]), spoiled, (frame < 100) | (frame >= 200))
    clean = SyncModel.fit(features(speech[train]), mouth[train], frame >= 200)
    assert np.allclose(refit.predict(audio), clean.predict(audio))


def test_lagged_correlation_sign_and_flat_signals():
    reference = np.random.default_rng(3).normal(size=300)
    follower = np.roll(reference, 5)  # follower[t] = reference[t - 5]: it lags 5 frames behind
    lags, correlation = lagged_correlation(reference, follower, 8)
    assert lags[np.argmax(correlation)] == 5 and correlation.max() == pytest.approx(1.0)
    _, flat = lagged_correlation(reference, np.zeros(300), 8)
    assert np.array_equal(flat, np.zeros(17))  # no motion: no correlation, not NaN


def test_model_save_and_load_round_trip(world, model, tmp_path):
    model.save(tmp_path / "sync.npz")
    loaded = SyncModel.load(tmp_path / "sync.npz")
    audio, _ = held_out(world, 0)
    assert loaded.blocks == model.blocks and loaded.context == model.context
    assert np.array_equal(loaded.predict(audio), model.predict(audio))


def face(opening: float, ocular: float) -> np.ndarray:
    """(478, 3) landmarks: outer eye corners `ocular` apart, the three facing inner-lip pairs `opening` apart
    vertically, mouth corners 50 apart, everything else at the origin, and random depth (to be ignored)."""
    points = np.zeros((NUM_LANDMARKS_REFINED, 3))
    points[RIGHT_EYE_OUTER, 0], points[LEFT_EYE_OUTER, 0] = -ocular / 2, ocular / 2
    for upper, lower in ((82, 87), (13, 14), (312, 317)):
        points[upper, 1], points[lower, 1] = -opening / 2, opening / 2
    points[61, 0], points[291, 0] = -25, 25
    points[:, 2] = np.random.default_rng(4).normal(size=len(points))
    return points


def test_mouth_signals_are_scale_free_and_ignore_depth():
    rng = np.random.default_rng(5)
    landmarks = rng.uniform(0, 256, size=(4, NUM_LANDMARKS_REFINED, 3))
    signals = mouth_signals(landmarks)
    assert signals.shape == (4, 3) and np.isfinite(signals).all()
    scaled = landmarks * 2 + np.array([30.0, -7.0, 0.0])
    assert np.allclose(mouth_signals(scaled), signals)
    assert np.allclose(mouth_signals(landmarks[..., :2]), signals)


def test_mouth_signals_measure_a_known_mouth():
    signals = mouth_signals(np.stack([face(opening=20.0, ocular=100.0), face(opening=0.0, ocular=50.0)]))
    assert signals[0, :2] == pytest.approx([20.0 / 100, 50.0 / 100])
    assert signals[1, :2] == pytest.approx([0.0, 50.0 / 50])


def test_inner_lip_area_is_the_polygon_area_over_the_squared_eye_distance():
    n, radius = len(LIPS_INNER), 10.0
    landmarks = face(opening=0.0, ocular=80.0)
    angles = 2 * np.pi * np.arange(n) / n  # LIPS_INNER is in polygon order: a regular n-gon
    landmarks[LIPS_INNER, 0], landmarks[LIPS_INNER, 1] = radius * np.cos(angles), radius * np.sin(angles)
    regular_polygon_area = 0.5 * n * radius**2 * np.sin(2 * np.pi / n)
    assert mouth_signals(landmarks[None])[0, 2] == pytest.approx(regular_polygon_area / 80.0**2)
    landmarks[LIPS_INNER, :2] = 0.0  # closed lips
    assert mouth_signals(landmarks[None])[0, 2] == 0.0


def test_mouth_signals_give_nan_rows_for_untracked_frames():
    landmarks = np.random.default_rng(6).uniform(0, 256, size=(3, NUM_LANDMARKS_REFINED, 3))
    landmarks[1] = np.nan
    signals = mouth_signals(landmarks)
    assert np.isnan(signals[1]).all() and np.isfinite(signals[[0, 2]]).all()
