"""Audio→Head motion, training and evaluation (the model, its sampling and the pose types: amg.motion.pose.inference).

Training is teacher-forced: each step predicts random training frames from their true pose history (plus
noise) and the audio around them. A teacher-forced model run free on its own samples moves less than the tracks
did; after training, a noise scale per pose component is fitted so that trajectories sampled for the training
audio move as much as the tracks (`calibrate_noise`). Evaluation compares sampled and tracked motion statistics
(velocity, amplitude, the link to speech energy) and checks long inputs for drift.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d

from amg.audio.features import AudioFeatures
from amg.config import Audio2PoseConfig
from amg.core.checkpoints import is_finished, load_checkpoint, save_checkpoint
from amg.core.device import pick_device, single_threaded
from amg.core.errors import AmgError
from amg.core.training import batch_rng, run_training, seed_everything, set_cosine_lr
from amg.motion.data import MotionData
from amg.motion.pose.inference import (
    POSE_COMPONENTS,
    POSE_DIM,
    Audio2PoseModel,
    PoseSequence,
    PoseStats,
    audio_input,
    build_network,
    sample_poses,
    sample_trajectories,
)
from amg.motion.pose.networks import Audio2PoseNet, mixture_nll

# Noise calibration (calibrate_noise): seeds sampled, secant steps, tolerance on log(motion level) (2%),
# and the range the scales are kept in.
CALIBRATION_SEEDS = (0, 1, 2, 3)
CALIBRATION_STEPS = 5
CALIBRATION_TOLERANCE = 0.02
NOISE_SCALE_RANGE = (0.5, 3.0)
# Seeds of the trajectories sampled for the held-out tail after training.
VALIDATION_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)
# Energy and head speed are compared after a 1-s moving average (25 frames): prosody and head motion go
# together phrase by phrase, not frame by frame.
ENERGY_SMOOTH_FRAMES = 25


def motion_level(z: np.ndarray) -> np.ndarray:
    """How much each component of a standardised pose trajectory (T, 6) moves, as one number per component:
    the geometric mean of its mean frame-to-frame step and its standard deviation."""
    return np.sqrt(np.abs(np.diff(z, axis=0)).mean(axis=0) * z.std(axis=0))


def calibrate_noise(
    net: Audio2PoseNet, stats: PoseStats, cfg: Audio2PoseConfig, audio: np.ndarray, tracked_z: np.ndarray
) -> np.ndarray:
    """Per-component noise scales (6,) at which trajectories sampled for `audio` move as much as `tracked_z`,
    its tracks, component by component.

    Why: a teacher-forced model learns one-step residuals given the true history. Run free, its history is
    its own samples, which tell it less, and the motion comes out calmer than the tracks (about 0.6x the
    amplitude for a 30-s avatar), by different amounts for different components. Secant steps on log(scale)
    against log(motion level), every component at once, find the scales.
    """
    target = np.log(motion_level(tracked_z))
    bounds = np.log(NOISE_SCALE_RANGE)

    def error(log_scale: np.ndarray) -> np.ndarray:
        z = sample_trajectories(net, stats, cfg, audio, CALIBRATION_SEEDS, np.exp(log_scale))
        return np.log(np.mean([motion_level(x) for x in z], axis=0)) - target

    x0, x1 = np.zeros(POSE_DIM), np.full(POSE_DIM, np.log(1.5))
    f0, f1 = error(x0), error(x1)
    for _ in range(CALIBRATION_STEPS):
        moving = (np.abs(f1) >= CALIBRATION_TOLERANCE) & (f1 != f0)
        if not moving.any():
            break
        step = np.where(moving, f1 * (x1 - x0) / np.where(moving, f1 - f0, 1.0), 0.0)
        x0, f0 = np.where(moving, x1, x0), np.where(moving, f1, f0)
        x1 = np.clip(x1 - step, *bounds)
        f1 = error(x1)
    return np.exp(x1)


# --- training --------------------------------------------------------------------------------------------------
def audio_windows(frames: np.ndarray, context: int, span: slice) -> torch.Tensor:
    """(N, 2 context + 1) frame indices around `frames`, clamped into `span` as the encoder's replicate
    padding does at the ends of a sequence (the training split is the sequence here)."""
    index = frames[:, None] + np.arange(-context, context + 1)[None, :]
    return torch.from_numpy(index.clip(span.start, span.stop - 1))


def history_windows(z: torch.Tensor, targets: np.ndarray, history: int) -> torch.Tensor:
    """(N, history, 6): the poses before each target frame."""
    return z[torch.from_numpy(targets[:, None] - history + np.arange(history)[None, :])]


def train_audio2pose(
    data: MotionData, cfg: Audio2PoseConfig, path: Path, log_dir: Path | None, max_minutes: float | None = None
) -> dict:
    """Train (or resume) the head-motion network on `data` and save it to `path`; return validation metrics.

    Teacher forcing: each step predicts `batch_size` random training frames from their true history (plus
    noise) and audio. `max_minutes` stops early with a resumable checkpoint.
    """
    seed_everything(cfg.seed)
    device = pick_device()
    train, val = data.split
    stats = PoseStats.fit(data.tracks, train)
    poses_z = stats.standardise(PoseSequence.from_tracks(data.tracks))
    audio_np = audio_input(data.features, cfg.audio_blocks)
    z, audio = torch.from_numpy(poses_z).to(device), torch.from_numpy(audio_np).to(device)
    targets = np.arange(train.start + cfg.history, train.stop)  # frames whose whole history lies in the split
    val_targets = np.arange(max(val.start, cfg.history), val.stop)
    if len(targets) == 0:
        raise AmgError(f"Too little training video for the pose model: {train.stop - train.start} frames.")
    net = build_network(cfg, audio.shape[1]).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step_fn(step: int) -> dict[str, float]:
        rng = batch_rng(cfg.seed, step)
        # Dropout draws from (seed, step) too: a resumed run then repeats an uninterrupted one exactly.
        torch.manual_seed(int(rng.integers(2**62)))
        batch = rng.choice(targets, cfg.batch_size)
        windows = audio[audio_windows(batch, cfg.audio_context, train)]
        code = net.encode_windows(windows + cfg.feature_noise * _normal(rng, windows.shape, device))
        history = history_windows(z, batch, cfg.history)
        history = history + cfg.history_noise * _normal(rng, history.shape, device)
        set_cosine_lr(optimizer, cfg.lr, step, cfg.steps)
        loss = mixture_nll(net(code, history), z[torch.from_numpy(batch)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"nll": float(loss.detach())}

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        """Teacher-forced likelihood of the held-out tail (motion statistics need the calibration: at the end)."""
        code = net.encode_windows(audio[audio_windows(val_targets, cfg.audio_context, slice(0, len(audio)))])
        mixture = net(code, history_windows(z, val_targets, cfg.history))
        return {"val_nll": float(mixture_nll(mixture, z[torch.from_numpy(val_targets)]))}

    extra = {
        "pose_stats": asdict(stats),
        "feature_blocks": {k: (v.start, v.stop) for k, v in data.features.blocks.items()},
        "audio_dim": audio.shape[1],
    }
    has_val = len(val_targets) > 0
    with single_threaded():
        run_training(
            path=path,
            model=net,
            optimizer=optimizer,
            config=cfg,
            step_fn=step_fn,
            eval_fn=eval_fn if has_val else None,
            log_dir=log_dir,
            desc="Audio→Pose",
            progress="motion.pose",
            extra=extra,
            run=data.run_record,
            max_minutes=max_minutes,
        )
        if not is_finished(path):
            return {}  # stopped by max_minutes: calibration waits for the finished network
        return _finish(net, stats, cfg, data, poses_z, audio_np, path, eval_fn() if has_val else {})


def _finish(
    net: Audio2PoseNet,
    stats: PoseStats,
    cfg: Audio2PoseConfig,
    data: MotionData,
    poses_z: np.ndarray,
    audio: np.ndarray,
    path: Path,
    metrics: dict,
) -> dict:
    """Calibrate the sampling noise of the trained `net`, measure its motion on the held-out tail, and add both
    to the checkpoint at `path`; return the metrics. `poses_z`, `audio`: the network's inputs, every frame."""
    train, val = data.split
    net = net.cpu()  # sampling runs on the CPU (its frame loop is latency-bound)
    noise_scale = calibrate_noise(net, stats, cfg, audio[train], poses_z[train])
    metrics = metrics | {f"noise_scale_{name}": float(v) for name, v in zip(POSE_COMPONENTS, noise_scale)}
    if val.stop > val.start:
        generated = sample_trajectories(net, stats, cfg, audio[val], VALIDATION_SEEDS, noise_scale)
        motion = evaluate_motion(
            [stats.poses(g) for g in generated],
            PoseSequence.from_tracks(data.tracks, val),
            data.features.block("energy")[val, 0],
        )
        metrics |= {f"val_{k}": v for k, v in motion.items()}
    save_checkpoint(path, **load_checkpoint(path) | {"noise_scale": noise_scale, "metrics": metrics})
    return metrics


def _normal(rng: np.random.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32)).to(device)


# --- evaluation ------------------------------------------------------------------------------------------------
def motion_statistics(poses: PoseSequence, energy: np.ndarray | None = None) -> dict[str, float]:
    """Velocity (mean |Δ| per frame) and amplitude (RMS deviation from the mean) of rotation (degrees) and
    translation x, y (pixels); with `energy` (T,), its correlation with the head's rotation speed."""
    rotation = np.degrees(poses.rotation)
    xy = poses.translation[:, :2]
    rotation_speed = np.linalg.norm(np.diff(rotation, axis=0), axis=1)
    stats = {
        "rotation_velocity_deg": float(rotation_speed.mean()),
        "translation_velocity_px": float(np.linalg.norm(np.diff(xy, axis=0), axis=1).mean()),
        "rotation_amplitude_deg": float(np.sqrt(rotation.var(axis=0).sum())),
        "translation_amplitude_px": float(np.sqrt(xy.var(axis=0).sum())),
    }
    if energy is not None:
        stats["energy_corr"] = energy_correlation(energy, rotation_speed)
    return stats


def energy_correlation(energy: np.ndarray, speed: np.ndarray) -> float:
    """Correlation of the voice energy (T,) with the head speed (T-1,: between frames t and t+1), both
    averaged over ~1 s. Positive: the head moves more while the voice is energetic."""
    e = uniform_filter1d(np.asarray(energy, float)[1:], ENERGY_SMOOTH_FRAMES, mode="nearest")
    s = uniform_filter1d(np.asarray(speed, float), ENERGY_SMOOTH_FRAMES, mode="nearest")
    return float(np.corrcoef(e, s)[0, 1]) if e.std() > 1e-9 and s.std() > 1e-9 else 0.0


def evaluate_motion(
    generated: PoseSequence | list[PoseSequence], tracked: PoseSequence, energy: np.ndarray | None = None
) -> dict[str, float]:
    """Motion statistics of generated poses (averaged over a list, e.g. several seeds) and of the tracked poses
    of the same audio, and their ratios generated/tracked (natural motion: each within about 0.7-1.3)."""
    samples = generated if isinstance(generated, list) else [generated]
    per_sample = [motion_statistics(poses, energy) for poses in samples]
    ours = {k: float(np.mean([s[k] for s in per_sample])) for k in per_sample[0]}
    theirs = motion_statistics(tracked, energy)
    result = {f"generated_{k}": v for k, v in ours.items()} | {f"tracked_{k}": v for k, v in theirs.items()}
    result |= {f"{k}_ratio": ours[k] / theirs[k] for k in ours if k != "energy_corr" and theirs[k] > 0}
    return result


def evaluate_drift(model: Audio2PoseModel, features: AudioFeatures, seed: int = 0) -> dict[str, float]:
    """Drive the model with long audio and measure how far the pose strays from the training distribution.

    `max_excess` is the largest excursion beyond the training range, as a fraction of that range (0 while
    inside it; the soft clamp bounds it by `clamp_margin`); `outside_fraction` the share of frames with any
    component beyond the range; `amplitude_ratio` the standardised spread of the drive over the training one (1).
    """
    z = model.stats.standardise(sample_poses(model, features, seed))
    low, high = model.stats.low, model.stats.high
    excess = np.maximum(z - high, low - z).clip(min=0) / (high - low)
    return {
        "frames": float(len(z)),
        "max_excess": float(excess.max()),
        "outside_fraction": float((excess > 0).any(axis=1).mean()),
        "max_abs_z": float(np.abs(z).max()),
        "train_max_abs_z": float(np.maximum(-low, high).max()),
        "amplitude_ratio": float(z.std(axis=0).mean()),
    }
