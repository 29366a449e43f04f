"""Audio→Head motion: natural head movement for any speech (after Live Speech Portraits' Audio2Headpose).

Head motion is not determined by the words: the same sentence can be said with many head movements. The
model is therefore probabilistic and autoregressive: a mixture density network (amg.motion.pose_network)
gives the distribution of the next frame's pose from the audio around it and the poses before it, and
generation samples from it frame by frame. A pose is 6 numbers (`pose_vectors`): the rotation vector, the
translation x, y in crop widths and the log scale, standardised with the training frames' mean and spread.

Drift over long inputs is guarded twice: the network predicts absolute (standardised) poses, so sampling noise
is not integrated into a random walk; and each sampled pose is soft-clamped into the training range widened
by `clamp_margin` of it (`soft_clamp`: the identity inside the range, a tanh saturation beyond it).

Besides generation, `make_poses` offers two fixed alternatives for the CLI's `--pose`: "static" (the avatar's
median pose held) and "replay" (the avatar's own tracked motion, played back and forth).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d

from amg.audio.features import AudioFeatures
from amg.config import Audio2PoseConfig
from amg.errors import AmgError
from amg.motion.data import MotionData
from amg.motion.pose_network import Audio2PoseNet, mixture_nll, sample_mixture
from amg.tracking.fitting import HeadPose
from amg.tracking.smoothing import smooth_series
from amg.tracking.tracks import Tracks
from amg.training import batch_rng, load_checkpoint, pick_device, run_training, seed_everything

POSE_DIM = 6
POSE_MODES = ("generate", "static", "replay")
# Energy and head speed are compared after a 1-s moving average (25 frames): prosody and head motion go
# together phrase by phrase, not frame by frame.
ENERGY_SMOOTH_FRAMES = 25


# --- poses -----------------------------------------------------------------------------------------------------
@dataclass
class PoseSequence:
    """Head pose per frame, in the units of `Tracks`: pixels of the avatar's size x size crop."""

    rotation: np.ndarray  # (T, 3) rotation vectors, radians
    translation: np.ndarray  # (T, 3) pixels (z: depth)
    scale: np.ndarray  # (T,) pixels per neutral-face unit

    def __len__(self) -> int:
        return len(self.scale)

    @classmethod
    def from_tracks(cls, tracks: Tracks, frames: slice = slice(None)) -> "PoseSequence":
        return cls(tracks.rotation[frames], tracks.translation[frames], tracks.scale[frames])

    def head_pose(self) -> HeadPose:
        return HeadPose.from_rotvecs(self.rotation, self.translation, self.scale, np.ones(len(self), bool))

    def take(self, index: np.ndarray | slice) -> "PoseSequence":
        return PoseSequence(self.rotation[index], self.translation[index], self.scale[index])


def pose_vectors(poses: PoseSequence, size: int) -> np.ndarray:
    """(T, 6): rotation vector, translation x, y in crop widths, log scale in crop widths (resolution-free)."""
    return np.concatenate(
        [poses.rotation, poses.translation[:, :2] / size, np.log(poses.scale / size)[:, None]], axis=1
    )


@dataclass
class PoseStats:
    """How the avatar's training frames move: standardisation of pose vectors and their range."""

    mean: np.ndarray  # (6,) pose vector mean
    std: np.ndarray  # (6,)
    low: np.ndarray  # (6,) standardised training minimum
    high: np.ndarray  # (6,) standardised training maximum
    size: int  # crop side the pixels refer to
    depth: float  # mean translation z: generated poses keep it (the face model's depth is not animated)

    @classmethod
    def fit(cls, tracks: Tracks, frames: slice) -> "PoseStats":
        vectors = pose_vectors(PoseSequence.from_tracks(tracks, frames), tracks.size)
        mean, std = vectors.mean(axis=0), vectors.std(axis=0) + 1e-6
        z = (vectors - mean) / std
        return cls(mean, std, z.min(axis=0), z.max(axis=0), tracks.size, float(tracks.translation[frames, 2].mean()))

    def standardise(self, poses: PoseSequence) -> np.ndarray:
        return ((pose_vectors(poses, self.size) - self.mean) / self.std).astype(np.float32)

    def poses(self, z: np.ndarray) -> PoseSequence:
        """Standardised (T, 6) → poses in pixels."""
        v = np.asarray(z, float) * self.std + self.mean
        depth = np.full((len(v), 1), self.depth)
        return PoseSequence(v[:, :3], np.concatenate([v[:, 3:5] * self.size, depth], axis=1), np.exp(v[:, 5]) * self.size)


def soft_clamp(z: torch.Tensor, low: torch.Tensor, high: torch.Tensor, margin: float) -> torch.Tensor:
    """Identity inside [low, high]; beyond, a tanh that leaves the edge with slope 1 and never passes
    `margin` x (high - low) outside it. A safety net: a well-trained model rarely reaches it."""
    width = margin * (high - low)
    above = high + width * torch.tanh((z - high) / width)
    below = low + width * torch.tanh((z - low) / width)
    return torch.where(z > high, above, torch.where(z < low, below, z))


# --- fixed alternatives ----------------------------------------------------------------------------------------
def static_poses(tracks: Tracks, n_frames: int) -> PoseSequence:
    """The avatar's median pose (per component: rotations stay far from 180°, so rotation vectors average
    well), held for `n_frames`."""
    median = PoseSequence(
        np.median(tracks.rotation, axis=0)[None], np.median(tracks.translation, axis=0)[None],
        np.median(tracks.scale)[None],
    )  # fmt: skip
    return median.take(np.zeros(n_frames, int))


def replay_poses(tracks: Tracks, n_frames: int) -> PoseSequence:
    """The avatar's own tracked motion; played backwards and forwards again when the audio is longer, so that
    the loop has no jump."""
    n = tracks.n_frames
    period = max(2 * n - 2, 1)
    phase = np.arange(n_frames) % period
    return PoseSequence.from_tracks(tracks).take(np.where(phase < n, phase, period - phase))


def make_poses(
    mode: str, tracks: Tracks, n_frames: int, *, model: "Audio2PoseModel | None" = None,
    features: AudioFeatures | None = None, seed: int = 0, temperature: float = 1.0, intensity: float = 1.0,
) -> PoseSequence:  # fmt: skip
    """Head poses for `n_frames` frames by `mode` (the CLI's --pose): "generate" (sampled from `model` for
    `features`), "static" or "replay" (from the avatar's `tracks`; these ignore the other arguments)."""
    if mode == "static":
        return static_poses(tracks, n_frames)
    if mode == "replay":
        return replay_poses(tracks, n_frames)
    if mode != "generate":
        raise AmgError(f"Unknown pose mode {mode!r}: use one of {', '.join(POSE_MODES)}.")
    if model is None or features is None:
        raise AmgError("Pose mode 'generate' needs a trained Audio→Pose model and the audio features.")
    if len(features) != n_frames:
        raise AmgError(f"Audio features have {len(features)} frames, {n_frames} were asked for.")
    return sample_poses(model, features, seed, temperature, intensity)


# --- network and sampling --------------------------------------------------------------------------------------
def build_network(cfg: Audio2PoseConfig, audio_dim: int) -> Audio2PoseNet:
    return Audio2PoseNet(audio_dim, POSE_DIM, cfg.hidden, cfg.history, cfg.audio_context, cfg.n_mixtures, cfg.dropout)


def audio_input(features: AudioFeatures, blocks: str) -> np.ndarray:
    """(T, D) the feature columns of `blocks` (comma list), in that order."""
    names = blocks.split(",")
    missing = [n for n in names if n not in features.blocks]
    if missing:
        raise AmgError(f"Audio features lack the block(s) {', '.join(missing)} the pose model needs.")
    return np.concatenate([features.block(n) for n in names], axis=1).astype(np.float32)


def _sample_standardised(
    net: Audio2PoseNet, stats: PoseStats, cfg: Audio2PoseConfig, audio: np.ndarray, seed: int,
    temperature: float, start: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(T, 6) standardised poses sampled frame by frame; `start` (history, 6) is the history before frame 0."""
    n = len(audio)
    rng = np.random.default_rng(seed)
    # All noise up front: one RNG call, and the draws for frame t do not depend on how the loop is run.
    gumbel = torch.from_numpy(rng.gumbel(size=(n, cfg.n_mixtures)).astype(np.float32))
    normal = torch.from_numpy(rng.standard_normal((n, POSE_DIM)).astype(np.float32))
    low, high = torch.tensor(stats.low, dtype=torch.float32), torch.tensor(stats.high, dtype=torch.float32)
    out = torch.empty(n, POSE_DIM)
    with torch.inference_mode():
        code = net.encode_audio(torch.from_numpy(audio)[None])[0]
        history = torch.tensor(start, dtype=torch.float32)[None]
        for t in range(n):
            mixture = net(code[t : t + 1], history)
            pose = soft_clamp(sample_mixture(mixture, gumbel[t : t + 1], normal[t : t + 1], temperature), low, high,
                              cfg.clamp_margin)  # fmt: skip
            out[t] = pose[0]
            history = torch.cat([history[:, 1:], pose[:, None]], dim=1)
    return out.numpy()


def _generate(
    net: Audio2PoseNet, stats: PoseStats, cfg: Audio2PoseConfig, audio: np.ndarray, seed: int,
    temperature: float = 1.0, intensity: float = 1.0, start: np.ndarray | None = None,
) -> PoseSequence:  # fmt: skip
    start = np.zeros((cfg.history, POSE_DIM), np.float32) if start is None else start
    z = _sample_standardised(net, stats, cfg, audio, seed, temperature, start)
    # Mild smoothing removes what is left of frame-to-frame sampling noise; zero mean in standardised units
    # is the avatar's mean pose, so scaling z scales the deviations from it.
    return stats.poses(smooth_series(z, cfg.smooth_window, 2) * intensity)


def _start_history(start_pose: PoseSequence, stats: PoseStats, history: int) -> np.ndarray:
    """The last `history` frames of `start_pose`, standardised; a shorter one is padded with its first frame."""
    z = stats.standardise(start_pose)
    return np.concatenate([np.repeat(z[:1], max(history - len(z), 0), axis=0), z[-history:]])


def sample_poses(
    model: "Audio2PoseModel", features: AudioFeatures, seed: int, temperature: float = 1.0, intensity: float = 1.0,
    start_pose: PoseSequence | None = None,
) -> PoseSequence:  # fmt: skip
    """Head poses for every frame of `features`, the same for the same seed.

    `temperature` scales the sampling noise (0: the most likely component's mean, deterministic and calmest);
    `intensity` scales the deviations from the avatar's mean pose; `start_pose` (its last frames) continues a
    previous sequence, else motion starts from the mean pose.
    """
    if {k: (v.start, v.stop) for k, v in features.blocks.items()} != model.feature_blocks:
        raise AmgError("Audio features were computed with another configuration than the pose model's.")
    start = None if start_pose is None else _start_history(start_pose, model.stats, model.cfg.history)
    audio = audio_input(features, model.cfg.audio_blocks)
    return _generate(model.net, model.stats, model.cfg, audio, seed, temperature, intensity, start)


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
    train, val = data.split(cfg.holdout)
    stats = PoseStats.fit(data.tracks, train)
    z = torch.from_numpy(stats.standardise(PoseSequence.from_tracks(data.tracks))).to(device)
    audio = torch.from_numpy(audio_input(data.features, cfg.audio_blocks)).to(device)
    targets = np.arange(train.start + cfg.history, train.stop)  # frames whose whole history lies in the split
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
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))  # cosine decay
        loss = mixture_nll(net(code, history), z[torch.from_numpy(batch)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"nll": float(loss.detach())}

    def eval_fn() -> dict[str, float]:
        frames = np.arange(max(val.start, cfg.history), val.stop)
        code = net.encode_windows(audio[audio_windows(frames, cfg.audio_context, slice(0, len(audio)))])
        nll = float(mixture_nll(net(code, history_windows(z, frames, cfg.history)), z[torch.from_numpy(frames)]))
        # The sampling loop runs on the CPU (per-frame latency, not throughput, bounds it).
        cpu_net = copy.deepcopy(net).cpu()
        generated = [_generate(cpu_net, stats, cfg, audio[val].cpu().numpy(), seed) for seed in range(3)]
        tracked = PoseSequence.from_tracks(data.tracks, val)
        metrics = evaluate_motion(generated, tracked, data.features.block("energy")[val, 0])
        return {"val_nll": nll, **{k: v for k, v in metrics.items() if k.endswith("_ratio")}}

    extra = {
        "pose_stats": asdict(stats),
        "feature_blocks": {k: (v.start, v.stop) for k, v in data.features.blocks.items()},
        "audio_dim": audio.shape[1],
    }
    return run_training(
        path=path, model=net, optimizer=optimizer, config=cfg, total_steps=cfg.steps, step_fn=step_fn,
        eval_fn=eval_fn if val.stop - val.start > cfg.history else None, eval_every=cfg.eval_every,
        save_every=cfg.save_every, log_dir=log_dir, desc="Audio→Pose", extra=extra, max_minutes=max_minutes,
    )  # fmt: skip


def _normal(rng: np.random.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32)).to(device)


# --- inference -------------------------------------------------------------------------------------------------
class Audio2PoseModel:
    """A trained head-motion network ready for sampling (on the CPU: the frame loop is latency-bound)."""

    def __init__(self, path: Path):
        state = load_checkpoint(path)
        self.cfg = Audio2PoseConfig(**state["config"])
        self.stats = PoseStats(**state["pose_stats"])
        self.feature_blocks = state["feature_blocks"]
        self.net = build_network(self.cfg, state["audio_dim"]).eval()
        self.net.load_state_dict(state["model"])

    def __call__(
        self, features: AudioFeatures, seed: int = 0, temperature: float = 1.0, intensity: float = 1.0,
        start_pose: PoseSequence | None = None,
    ) -> PoseSequence:  # fmt: skip
        return sample_poses(self, features, seed, temperature, intensity, start_pose)


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
