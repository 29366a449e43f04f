"""Audio→Head motion: reproducible, bounded sampling; the fixed pose modes; evaluation; resumable training."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from amg.audio.features import AudioFeatures
from amg.config import Audio2PoseConfig, AvatarConfig, MotionConfig
from amg.core.checkpoints import load_checkpoint
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.motion.data import MotionData, load_motion_data
from amg.motion.pose import inference as pose_model
from amg.motion.pose import train as headpose
from amg.motion.pose.inference import Audio2PoseModel, PoseSequence, make_poses, sample_poses

HOLDOUT = AvatarConfig().holdout  # every stage holds out the same tail

STEPS = 300


@pytest.fixture(scope="module")
def avatar(obama_avatar: tuple[Layout, str]) -> MotionData:
    """obama_clip2 (30 s), preprocessed once for the session by conftest."""
    layout, name = obama_avatar
    return load_motion_data(layout, name, MotionConfig().features, HOLDOUT)


@pytest.fixture(scope="module")
def trained(avatar: MotionData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("pose") / "audio2pose.pt"
    cfg = Audio2PoseConfig(steps=STEPS, eval_every=STEPS, save_every=STEPS)
    return path, headpose.train_audio2pose(avatar, cfg, path, log_dir=None)


@pytest.fixture(scope="module")
def model(trained: tuple[Path, dict]) -> Audio2PoseModel:
    return Audio2PoseModel(trained[0])


def looped(features: AudioFeatures, n_frames: int) -> AudioFeatures:
    """The features repeated end to end up to `n_frames` rows (a long drive from a short clip)."""
    index = np.arange(n_frames) % len(features)
    return AudioFeatures(features.values[index], features.blocks, features.vad[index])


def mean_motion(model: Audio2PoseModel, samples: list[PoseSequence]) -> float:
    return float(np.mean([headpose.motion_level(model.stats.standardise(p)).mean() for p in samples]))


# --- pure functions -------------------------------------------------------------------------------------------
def test_soft_clamp_is_identity_inside_and_bounded_outside():
    low, high = torch.tensor([-1.0]), torch.tensor([2.0])
    z = torch.linspace(-50, 50, 2001)[:, None]
    clamped = pose_model.soft_clamp(z, low, high, margin=0.25)
    inside = (z >= low) & (z <= high)
    assert torch.equal(clamped[inside], z[inside])
    assert clamped.min() >= -1.75 and clamped.max() <= 2.75  # within a quarter of the range (3) beyond
    assert (clamped.diff(dim=0) >= 0).all()  # monotonic: the order of poses is kept
    just_above = pose_model.soft_clamp(torch.tensor([[2.001]]), low, high, 0.25)
    assert abs(float(just_above) - 2.001) < 1e-5  # leaves the edge with slope 1: no kink


def test_pose_vectors_round_trip_through_stats(avatar: MotionData):
    stats = pose_model.PoseStats.fit(avatar.tracks, slice(0, 300))
    tracked = PoseSequence.from_tracks(avatar.tracks)
    back = stats.poses(stats.standardise(tracked))
    np.testing.assert_allclose(back.rotation, tracked.rotation, atol=1e-5)
    np.testing.assert_allclose(back.translation[:, :2], tracked.translation[:, :2], atol=1e-3)
    np.testing.assert_allclose(back.scale, tracked.scale, rtol=1e-5)
    assert np.all(back.translation[:, 2] == stats.depth)


def test_evaluate_motion_of_the_tracks_against_themselves():
    rng = np.random.default_rng(0)
    rotation = np.cumsum(rng.normal(0, 0.002, (200, 3)), axis=0)
    poses = PoseSequence(
        rotation, np.c_[128 + np.cumsum(rng.normal(0, 0.5, (200, 2)), axis=0), np.zeros(200)], np.full(200, 50.0)
    )
    energy = rng.normal(size=200)
    result = headpose.evaluate_motion(poses, poses, energy)
    for key in ("rotation_velocity_deg", "translation_velocity_px", "rotation_amplitude_deg"):
        assert result[f"{key}_ratio"] == pytest.approx(1.0)
    assert result["generated_energy_corr"] == result["tracked_energy_corr"]
    still = headpose.motion_statistics(poses.take(np.zeros(200, int)), energy)
    assert still["rotation_velocity_deg"] == 0 and still["rotation_amplitude_deg"] == pytest.approx(0, abs=1e-9)
    assert still["energy_corr"] == 0.0


def test_energy_correlation_sign():
    t = np.arange(1000)
    energy = np.sin(2 * np.pi * t / 200)
    speed = 1.0 + np.sin(2 * np.pi * t[1:] / 200)
    assert headpose.energy_correlation(energy, speed) > 0.9
    assert headpose.energy_correlation(energy, -speed) < -0.9


# --- fixed modes ----------------------------------------------------------------------------------------------
def test_static_mode_holds_the_median_pose(avatar: MotionData):
    poses = make_poses("static", avatar.tracks, 100)
    assert len(poses) == 100
    assert np.all(poses.rotation == poses.rotation[0]) and np.all(poses.scale == poses.scale[0])
    np.testing.assert_allclose(poses.translation[0], np.median(avatar.tracks.translation, axis=0))
    assert headpose.motion_statistics(poses)["rotation_velocity_deg"] == 0


def test_replay_mode_plays_the_tracks_then_back_and_forth(avatar: MotionData):
    tracks = avatar.tracks
    n = tracks.n_frames
    poses = make_poses("replay", tracks, 3 * n)
    np.testing.assert_array_equal(poses.rotation[:n], tracks.rotation)
    np.testing.assert_array_equal(poses.translation[:n], tracks.translation)
    # Backwards after the end (no jump at the turn), then forwards again from the start.
    np.testing.assert_array_equal(poses.rotation[n : 2 * n - 1], tracks.rotation[n - 2 :: -1])
    np.testing.assert_array_equal(poses.scale[2 * n - 2 : 3 * n - 2], tracks.scale)
    assert np.abs(np.diff(poses.rotation, axis=0)).max() <= np.abs(np.diff(tracks.rotation, axis=0)).max()


def test_unknown_or_incomplete_mode_is_an_error(avatar: MotionData):
    with pytest.raises(AmgError, match="Unknown pose mode"):
        make_poses("dance", avatar.tracks, 10)
    with pytest.raises(AmgError, match="needs a trained"):
        make_poses("generate", avatar.tracks, 10)


# --- generation -----------------------------------------------------------------------------------------------
def test_sampled_poses_have_the_right_shapes_and_are_finite(model: Audio2PoseModel, avatar: MotionData):
    poses = make_poses("generate", avatar.tracks, len(avatar.features), model=model, features=avatar.features)
    n = len(avatar.features)
    assert poses.rotation.shape == (n, 3) and poses.translation.shape == (n, 3) and poses.scale.shape == (n,)
    assert all(np.isfinite(a).all() for a in (poses.rotation, poses.translation, poses.scale))
    assert np.all(poses.translation[:, 2] == model.stats.depth) and np.all(poses.scale > 0)
    assert poses.head_pose().rotations.shape == (n, 3, 3)


def test_same_seed_same_poses_other_seed_other_poses(model: Audio2PoseModel, avatar: MotionData):
    a, b = sample_poses(model, avatar.features, seed=3), model(avatar.features, seed=3)
    c = model(avatar.features, seed=4)
    np.testing.assert_array_equal(a.rotation, b.rotation)
    np.testing.assert_array_equal(a.translation, b.translation)
    assert np.abs(a.rotation - c.rotation).max() > np.radians(0.5)


def test_temperature_zero_is_deterministic_and_calmer(model: Audio2PoseModel, avatar: MotionData):
    calm = [model(avatar.features, seed=s, temperature=0.0) for s in (0, 1)]
    np.testing.assert_array_equal(calm[0].rotation, calm[1].rotation)  # no noise left: the seed is irrelevant
    lively = [model(avatar.features, seed=s, temperature=1.0) for s in (0, 1)]
    assert mean_motion(model, calm) < 0.7 * mean_motion(model, lively)


def test_intensity_scales_deviations_from_the_mean_pose(model: Audio2PoseModel, avatar: MotionData):
    z1 = model.stats.standardise(model(avatar.features, seed=0))
    z2 = model.stats.standardise(model(avatar.features, seed=0, intensity=2.0))
    np.testing.assert_allclose(z2, 2 * z1, atol=1e-4)
    still = model(avatar.features, seed=0, intensity=0.0)
    np.testing.assert_allclose(model.stats.standardise(still), 0, atol=1e-4)


def test_start_pose_continues_a_sequence(model: Audio2PoseModel, avatar: MotionData):
    start = PoseSequence.from_tracks(avatar.tracks, slice(-20, None))
    poses = model(avatar.features, seed=0, start_pose=start)
    z_start, z = model.stats.standardise(start), model.stats.standardise(poses)
    assert np.abs(z[0] - z_start[-1]).max() < 0.5  # picks up where the given sequence stopped
    assert np.abs(z[0] - z_start[-1]).max() < np.abs(z_start[-1]).max()  # not from the mean pose


def test_head_moves_more_when_the_voice_is_energetic(model: Audio2PoseModel, avatar: MotionData):
    energy = avatar.features.block("energy")[:, 0]
    correlations = [headpose.motion_statistics(model(avatar.features, seed=s), energy)["energy_corr"] for s in range(3)]
    assert np.mean(correlations) > 0.1  # 0.3 measured at 300 steps (0.5 after the default 1500; tracks: 0.6)


def test_five_minute_drive_stays_in_the_training_range(
    model: Audio2PoseModel, trained: tuple[Path, dict], avatar: MotionData
):
    drift = headpose.evaluate_drift(model, looped(avatar.features, 7500))
    assert drift["frames"] == 7500
    assert drift["max_excess"] <= model.cfg.clamp_margin
    # The network itself keeps the spread of the training poses (no random walk), clamp or not (over 3 min).
    unclamped = Audio2PoseModel(trained[0])
    unclamped.cfg = dataclasses.replace(unclamped.cfg, clamp_margin=1e6)
    free = headpose.evaluate_drift(unclamped, looped(avatar.features, 4500))
    assert 0.3 < free["amplitude_ratio"] < 2.0
    assert free["max_abs_z"] < 2 * free["train_max_abs_z"]


def test_sampling_is_fast(model: Audio2PoseModel, avatar: MotionData):
    features = looped(avatar.features, 2000)
    started = time.perf_counter()
    model(features, seed=0)
    assert 2000 / (time.perf_counter() - started) > 500  # frames per second


def test_features_of_another_layout_are_refused(model: Audio2PoseModel, avatar: MotionData):
    other = AudioFeatures(avatar.features.values[:, 1:], {"energy": slice(0, 1)}, avatar.features.vad)
    with pytest.raises(AmgError, match="another configuration"):
        model(other)


# --- training -------------------------------------------------------------------------------------------------
def test_training_reports_calibrated_held_out_statistics(trained: tuple[Path, dict]):
    path, metrics = trained
    state = load_checkpoint(path)
    assert state["finished"] and state["step"] == STEPS
    scales = [metrics[f"noise_scale_{name}"] for name in pose_model.POSE_COMPONENTS]
    np.testing.assert_allclose(state["noise_scale"], scales)
    low, high = headpose.NOISE_SCALE_RANGE
    assert all(low <= s <= high for s in scales)
    # Calibrated: the held-out tail moves about as much as the tracks did (0.95-1.4 measured at 300 steps).
    keys = ("rotation_velocity_deg", "rotation_amplitude_deg", "translation_velocity_px", "translation_amplitude_px")
    ratios = {key: metrics[f"val_{key}_ratio"] for key in keys}
    assert all(0.5 < r < 2.0 for r in ratios.values()), ratios
    assert np.isfinite(metrics["val_nll"]) and np.isfinite(metrics["val_generated_energy_corr"])


def test_interrupted_training_resumes_where_it_stopped(avatar: MotionData, tmp_path: Path):
    cfg = Audio2PoseConfig(steps=40, eval_every=40, save_every=40)
    interrupted, straight = tmp_path / "interrupted.pt", tmp_path / "straight.pt"
    assert headpose.train_audio2pose(avatar, cfg, interrupted, None, max_minutes=1e-6) == {}
    stopped = load_checkpoint(interrupted)
    assert not stopped["finished"] and 0 < stopped["step"] < cfg.steps
    with pytest.raises(AmgError, match="unfinished"):
        Audio2PoseModel(interrupted)

    headpose.train_audio2pose(avatar, cfg, interrupted, None)
    headpose.train_audio2pose(avatar, cfg, straight, None)
    resumed, uninterrupted = load_checkpoint(interrupted), load_checkpoint(straight)
    assert resumed["finished"] and resumed["step"] == cfg.steps
    # Batches and dropout depend on (seed, step) only: resuming repeats the uninterrupted run exactly.
    for name, weights in uninterrupted["model"].items():
        torch.testing.assert_close(resumed["model"][name], weights, rtol=0, atol=0)
    np.testing.assert_array_equal(resumed["noise_scale"], uninterrupted["noise_scale"])


def test_sampling_reports_its_progress_frame_by_frame(model: Audio2PoseModel, avatar: MotionData):
    from amg.core.progress import reporting_to

    reports = []
    with reporting_to(lambda stage, done, total: reports.append((stage, done, total))):
        sample_poses(model, avatar.features, seed=0)
    n = len(avatar.features)
    assert reports[-1] == ("motion.head", n, n) and [r[1] for r in reports] == list(range(1, n + 1))
