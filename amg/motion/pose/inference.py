"""Audio→Head motion at inference: natural head movement for any speech (after Live Speech Portraits'
Audio2Headpose); its training is amg.motion.pose.train.

Head motion is not determined by the words: the same sentence can be said with many head movements. The
model is therefore probabilistic and autoregressive: a mixture density network (amg.motion.pose.networks)
gives the distribution of the next frame's pose from the audio around it and the poses before it, and
generation samples from it frame by frame. A pose is 6 numbers (`pose_vectors`): the rotation vector, the
translation x, y in crop widths and the log scale, standardised with the training frames' mean and spread.

Drift over long inputs is guarded twice. The network's mean for the next pose is the last pose pulled towards
the avatar's mean pose by a learned leak, plus offsets computed without seeing the absolute pose (see
`Audio2PoseNet`): unlike integrated velocities, whose spread grows without bound, such a process keeps a
bounded spread. And each sampled pose is soft-clamped into the training range widened by `clamp_margin` of it
(`soft_clamp`: the identity inside the range, a tanh saturation beyond it).

Sampling uses the per-component noise scales fitted after training (amg.motion.pose.train.calibrate_noise);
`temperature` multiplies them.

Besides generation, `make_poses` offers two fixed alternatives for the CLI's `--pose`: "static" (the avatar's
median pose held) and "replay" (the avatar's own tracked motion, played back and forth).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from amg.audio.features import AudioFeatures
from amg.config import Audio2PoseConfig, config_from_dict
from amg.core.checkpoints import load_checkpoint
from amg.core.device import single_threaded
from amg.core.errors import AmgError
from amg.core.progress import report
from amg.motion.pose.networks import Audio2PoseNet, sample_mixture
from amg.tracking.fitting import HeadPose
from amg.tracking.smoothing import smooth_series
from amg.tracking.tracks import Tracks

POSE_DIM = 6
POSE_COMPONENTS = ("rotation_x", "rotation_y", "rotation_z", "x", "y", "log_scale")  # see pose_vectors
POSE_MODES = ("generate", "static", "replay")


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
        depth = float(tracks.translation[frames, 2].mean())
        return cls(mean, std, z.min(axis=0), z.max(axis=0), tracks.size, depth)

    def standardise(self, poses: PoseSequence) -> np.ndarray:
        return ((pose_vectors(poses, self.size) - self.mean) / self.std).astype(np.float32)

    def poses(self, z: np.ndarray) -> PoseSequence:
        """Standardised (T, 6) → poses in pixels."""
        v = np.asarray(z, float) * self.std + self.mean
        depth = np.full((len(v), 1), self.depth)
        translation = np.concatenate([v[:, 3:5] * self.size, depth], axis=1)
        return PoseSequence(v[:, :3], translation, np.exp(v[:, 5]) * self.size)


def soft_clamp(z: torch.Tensor, low: torch.Tensor, high: torch.Tensor, margin: float) -> torch.Tensor:
    """Identity inside [low, high]; beyond, a tanh that leaves the edge with slope 1 and never passes
    `margin` x (high - low) outside it: a safety net against runaway trajectories that leaves the rest alone."""
    width = margin * (high - low)
    inside = torch.minimum(torch.maximum(z, low), high)
    return inside + width * torch.tanh((z - inside) / width)


# --- fixed alternatives ----------------------------------------------------------------------------------------
def static_poses(tracks: Tracks, n_frames: int) -> PoseSequence:
    """The avatar's median pose (per component: rotations stay far from 180°, so rotation vectors average
    well), held for `n_frames`."""
    median = PoseSequence(
        np.median(tracks.rotation, axis=0)[None],
        np.median(tracks.translation, axis=0)[None],
        np.median(tracks.scale)[None],
    )
    return median.take(np.zeros(n_frames, int))


def replay_poses(tracks: Tracks, n_frames: int, first: int = 0) -> PoseSequence:
    """The avatar's own tracked motion for frames `first`, ...: played backwards and forwards again when the
    audio is longer, so that the loop has no jump."""
    n = tracks.n_frames
    period = max(2 * n - 2, 1)
    phase = np.arange(first, first + n_frames) % period
    return PoseSequence.from_tracks(tracks).take(np.where(phase < n, phase, period - phase))


def make_poses(
    mode: str,
    tracks: Tracks,
    n_frames: int,
    *,
    model: "Audio2PoseModel | None" = None,
    features: AudioFeatures | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    intensity: float = 1.0,
    first: int = 0,
) -> PoseSequence:
    """Head poses for `n_frames` frames by `mode` (the CLI's --pose): "generate" (sampled from `model` for
    `features`), "static" or "replay" (from the avatar's `tracks`, for frames `first`, ...; these ignore the
    other arguments)."""
    if mode == "static":
        return static_poses(tracks, n_frames)
    if mode == "replay":
        return replay_poses(tracks, n_frames, first)
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


def audio_input(features: AudioFeatures, blocks: tuple[str, ...]) -> np.ndarray:
    """(T, D) the feature columns of `blocks`, in that order."""
    names = list(blocks)
    missing = [n for n in names if n not in features.blocks]
    if missing:
        raise AmgError(f"Audio features lack the block(s) {', '.join(missing)} the pose model needs.")
    return np.concatenate([features.block(n) for n in names], axis=1).astype(np.float32)


class PoseSampler:
    """Head poses sampled frame by frame from the network's mixture, for several seeds at once.

    Each frame draws its own noise from each seed's generator, so a stream that steps it as audio codes arrive
    and a file stepped in one go draw the same numbers. `noise_scale` (6,) multiplies the mixture's standard
    deviations (see `calibrate_noise`), `temperature` that and the randomness of the component choice. `start`
    (history, 6) is the history before the first frame, by default the mean pose held still.
    """

    def __init__(
        self,
        net: Audio2PoseNet,
        stats: PoseStats,
        cfg: Audio2PoseConfig,
        seeds: Sequence[int],
        noise_scale: np.ndarray,
        temperature: float = 1.0,
        start: np.ndarray | None = None,
    ):
        self.net, self.cfg, self.temperature = net, cfg, temperature
        self.rngs = [np.random.default_rng(seed) for seed in seeds]
        self.low = torch.tensor(stats.low, dtype=torch.float32)
        self.high = torch.tensor(stats.high, dtype=torch.float32)
        self.std_scale = torch.tensor(noise_scale, dtype=torch.float32)
        start = np.zeros((cfg.history, POSE_DIM)) if start is None else start
        self.history = torch.tensor(start, dtype=torch.float32).expand(len(seeds), -1, -1)

    @torch.inference_mode()
    def step(self, codes: torch.Tensor, progress: bool = False) -> np.ndarray:
        """(n, H) audio codes of the next n frames → (n, S, 6) standardised poses (not yet smoothed)."""
        k = self.cfg.n_mixtures
        out = torch.empty(len(codes), len(self.rngs), POSE_DIM)
        for t, code in enumerate(codes):
            gumbel = torch.from_numpy(np.stack([r.gumbel(size=k) for r in self.rngs]).astype(np.float32))
            normal = torch.from_numpy(np.stack([r.standard_normal(POSE_DIM) for r in self.rngs]).astype(np.float32))
            mixture = self.net(code.expand(len(self.rngs), -1), self.history)
            pose = sample_mixture(mixture, gumbel, normal, self.temperature, self.std_scale)
            out[t] = pose = soft_clamp(pose, self.low, self.high, self.cfg.clamp_margin)
            self.history = torch.cat([self.history[:, 1:], pose[:, None]], dim=1)
            if progress:
                report("motion.head", t + 1, len(codes))
        return out.numpy()


def smooth_poses(z: np.ndarray, cfg: Audio2PoseConfig) -> np.ndarray:
    """Smoothing removes what is left of frame-to-frame sampling noise (head motion is slower than 2-3 Hz)."""
    return smooth_series(z, cfg.smooth_window, 2)


def sample_trajectories(
    net: Audio2PoseNet,
    stats: PoseStats,
    cfg: Audio2PoseConfig,
    audio: np.ndarray,
    seeds: Sequence[int],
    noise_scale: np.ndarray,
    temperature: float = 1.0,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """(S, T, 6) smoothed standardised poses for the (T, D) audio features, one trajectory per seed (see
    PoseSampler)."""
    with torch.inference_mode():
        codes = net.encode_audio(torch.from_numpy(audio)[None])[0]
    sampler = PoseSampler(net, stats, cfg, seeds, noise_scale, temperature, start)
    return smooth_poses(sampler.step(codes, progress=True), cfg).transpose(1, 0, 2)


def _start_history(start_pose: PoseSequence, stats: PoseStats, history: int) -> np.ndarray:
    """The last `history` frames of `start_pose`, standardised; a shorter one is padded with its first frame."""
    z = stats.standardise(start_pose)
    return np.concatenate([np.repeat(z[:1], max(history - len(z), 0), axis=0), z[-history:]])


def check_features(model: "Audio2PoseModel", features: AudioFeatures) -> None:
    """Refuse features computed otherwise than the ones the model was trained on."""
    if {k: (v.start, v.stop) for k, v in features.blocks.items()} != model.feature_blocks:
        raise AmgError("Audio features were computed with another configuration than the pose model's.")


def sample_poses(
    model: "Audio2PoseModel",
    features: AudioFeatures,
    seed: int,
    temperature: float = 1.0,
    intensity: float = 1.0,
    start_pose: PoseSequence | None = None,
) -> PoseSequence:
    """Head poses for every frame of `features`, the same for the same seed.

    `temperature` scales the sampling noise (1: the calibrated model; 0: the most likely component's mean,
    deterministic and calmer); `intensity` scales the deviations from the avatar's mean pose; `start_pose`
    (its last frames) continues a previous sequence, else motion starts from the mean pose.
    """
    check_features(model, features)
    start = None if start_pose is None else _start_history(start_pose, model.stats, model.cfg.history)
    audio = audio_input(features, model.cfg.audio_blocks)
    with single_threaded():
        z = sample_trajectories(
            model.net, model.stats, model.cfg, audio, [seed], model.noise_scale, temperature, start
        )[0]
    # Zero in standardised units is the avatar's mean pose: scaling z scales the deviations from it.
    return model.stats.poses(z * intensity)


# --- inference -------------------------------------------------------------------------------------------------
class Audio2PoseModel:
    """A trained head-motion network ready for sampling (on the CPU: the frame loop is latency-bound)."""

    def __init__(self, path: Path):
        state = load_checkpoint(path)
        self.cfg = config_from_dict(Audio2PoseConfig, state["config"])
        self.stats = PoseStats(**state["pose_stats"])
        if "noise_scale" not in state:
            raise AmgError(f"{path} is an unfinished pose model: run its training again to complete it.")
        self.noise_scale = np.asarray(state["noise_scale"])
        self.feature_blocks = state["feature_blocks"]
        self.net = build_network(self.cfg, state["audio_dim"]).eval()
        self.net.load_state_dict(state["model"])

    def __call__(
        self,
        features: AudioFeatures,
        seed: int = 0,
        temperature: float = 1.0,
        intensity: float = 1.0,
        start_pose: PoseSequence | None = None,
    ) -> PoseSequence:
        return sample_poses(self, features, seed, temperature, intensity, start_pose)
