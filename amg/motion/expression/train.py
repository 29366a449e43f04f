"""Audio→Expression (lip-sync), training and evaluation: a temporal conv net from audio features to the avatar's
expression coefficients (the model at inference: amg.motion.expression.inference).

Trained on the avatar's own video (its speech ↔ its tracked expressions), and on its training speech played
faster and slower with the expressions re-timed to match (speed perturbation). Losses, all in pixels at 256:
the whole face shape (MSE, through the orthonormal PCA basis), the lip landmarks (mean distance) and the lip
landmarks' velocity (so predictions do not jitter). Validation on the video's held-out tail reports the lip
landmark error and the correlation of the mouth opening, against two baselines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly
from tqdm import tqdm

from amg.audio.features import FRAME_HOP, AudioFeatures, compute_features
from amg.config import Audio2ExpressionConfig
from amg.core.device import pick_device, single_threaded
from amg.core.split import held_out_split
from amg.core.training import batch_rng, run_training, seed_everything, set_cosine_lr
from amg.motion.data import MotionData, gather_windows, window_starts
from amg.motion.expression.inference import MIN_VOICE_FRAMES, SILENCE_VAD, OpeningGauge, build_network, widen
from amg.motion.expression.networks import TemporalConvNet
from amg.tracking import fitting, topology

# The share of the training part that the calibration network does not learn from (amplitude_gain), the fewest
# frames that tail may have to be measured, and the largest gain it may give.
CALIBRATION_SHARE = 0.2
MIN_CALIBRATION_FRAMES = 50
MAX_GAIN = 1.6


@dataclass
class ExpressionTargets:
    """What the losses need, as tensors: coefficient scale, lip rows of the PCA basis, pixels per unit."""

    coeff_mean: torch.Tensor  # (K,)
    coeff_std: torch.Tensor  # (K,)
    lip_basis: torch.Tensor  # (K, L*3): head-frame lip coordinates per coefficient
    px_per_unit: float  # mean head scale of the video, in pixels at 256
    n_points: int

    @classmethod
    def from_data(cls, data: MotionData, train: slice) -> "ExpressionTargets":
        coeffs = data.tracks.expression[train]
        basis = data.face_model.basis.reshape(len(data.face_model.basis), -1, 3)
        return cls(
            coeff_mean=torch.tensor(coeffs.mean(axis=0)),
            coeff_std=torch.tensor(coeffs.std(axis=0) + 1e-6),
            lip_basis=torch.tensor(basis[:, topology.LIPS].reshape(len(basis), -1), dtype=torch.float32),
            px_per_unit=float(np.mean(data.tracks.scale[train]) * 256 / data.tracks.size),
            n_points=basis.shape[1],
        )

    def lips_px(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, T, K) coefficients → (B, T, L, 3) lip offsets in pixels at 256."""
        lips = (coeffs @ self.lip_basis) * self.px_per_unit
        return lips.reshape(*coeffs.shape[:-1], -1, 3)


def expression_losses(pred: torch.Tensor, target: torch.Tensor, t: ExpressionTargets, cfg) -> dict[str, torch.Tensor]:
    """pred/target: (B, T, K) coefficients (not normalised)."""
    # Orthonormal basis: |Δc|² / (3N) is the mean squared per-coordinate shape error, in head units².
    shape_mse = ((pred - target) ** 2).sum(-1).mean() / (3 * t.n_points) * t.px_per_unit**2
    lips_pred, lips_true = t.lips_px(pred), t.lips_px(target)
    lips = (lips_pred - lips_true).norm(dim=-1).mean()
    velocity = (lips_pred.diff(dim=1) - lips_true.diff(dim=1)).norm(dim=-1).mean()
    total = shape_mse + cfg.mouth_weight * lips + cfg.velocity_weight * velocity
    return {"loss": total, "shape_mse_px2": shape_mse, "lips_px": lips, "lip_velocity_px": velocity}


def speed_perturbed(data: MotionData, frames: slice, speed: float) -> tuple[np.ndarray, np.ndarray]:
    """The features and expressions of `frames` as if spoken `speed` times as fast: the speech resampled (tempo
    and pitch change together, as in speech recognition's speed perturbation) and the expressions re-timed to
    it by linear interpolation. Another voice saying the same words at another pace, for free."""
    up, down = 100, round(100 * speed)
    samples = resample_poly(data.audio[frames.start * FRAME_HOP : frames.stop * FRAME_HOP], up, down)
    n_frames = len(samples) // FRAME_HOP
    features = compute_features(samples.astype(np.float32), data.feature_cfg, n_frames)
    source = np.minimum(np.arange(n_frames) * speed, frames.stop - frames.start - 1)  # in frames of `frames`
    coeffs = data.tracks.expression[frames]
    before = np.floor(source).astype(int)
    after = np.minimum(before + 1, len(coeffs) - 1)
    weight = (source - before)[:, None]
    return features.values, ((1 - weight) * coeffs[before] + weight * coeffs[after]).astype(np.float32)


def training_sequences(data: MotionData, train: slice, speeds: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Features and expressions of the whole video followed by the training part at each of `speeds`, and the
    spans (slices of those rows) that training windows are drawn from: the training part, then each copy."""
    features, coeffs, spans = [data.features.values], [data.tracks.expression], [train]
    for speed in speeds:
        f, c = speed_perturbed(data, train, speed)
        start = sum(len(x) for x in features)
        features.append(f)
        coeffs.append(c)
        spans.append(slice(start, start + len(f)))
    return np.concatenate(features).astype(np.float32), np.concatenate(coeffs).astype(np.float32), spans


@dataclass
class ExpressionTrainer:
    """A lip-sync network and its optimizer, learning from the windows of `spans` (rows of the sequences)."""

    cfg: Audio2ExpressionConfig
    features: torch.Tensor  # (rows, D)
    coeffs: torch.Tensor  # (rows, K)
    spans: list[slice]
    targets: ExpressionTargets
    device: torch.device

    def __post_init__(self) -> None:
        self.net = build_network(self.cfg, self.features.shape[1], self.coeffs.shape[1]).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self._targets = _on(self.targets, self.device)

    def step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        rng = batch_rng(cfg.seed, step)
        starts = window_starts(rng, cfg.batch_size, cfg.window, self.spans)
        x = gather_windows(self.features, torch.from_numpy(starts), cfg.window)
        y = gather_windows(self.coeffs, torch.from_numpy(starts), cfg.window)
        # Feature noise: the driving voice will never sound exactly like the avatar's own.
        x = x + cfg.feature_noise * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        set_cosine_lr(self.optimizer, cfg.lr, step, cfg.steps)
        t = self._targets
        pred = self.net(x.to(self.device)) * t.coeff_std + t.coeff_mean
        losses = expression_losses(pred, y.to(self.device), t, cfg)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def predict(self, features: AudioFeatures) -> np.ndarray:
        return _predict(self.net, self.targets, features, self.device)


def amplitude_gain(data: MotionData, cfg: Audio2ExpressionConfig, train: slice, device: torch.device) -> float:
    """How much wider the lip-sync network's mouth motion must be made to move as the person's does on speech
    it has not heard: a network trained on a few minutes of one person regresses towards the mean mouth there
    (on its training frames it reproduces the full motion, so they cannot tell). A second network learns from
    all but the last CALIBRATION_SHARE of the training part; the ratio of the tracked to its predicted mouth
    opening's spread on that tail (within [1, MAX_GAIN]) is the gain."""
    fit, tail = (
        slice(train.start + part.start, train.start + part.stop)
        for part in held_out_split(train.stop - train.start, CALIBRATION_SHARE)
    )
    if tail.stop - tail.start < MIN_CALIBRATION_FRAMES:
        return 1.0
    features, coeffs, spans = training_sequences(data, fit, cfg.speeds)
    trainer = ExpressionTrainer(
        cfg, torch.from_numpy(features), torch.from_numpy(coeffs), spans, ExpressionTargets.from_data(data, fit), device
    )
    trainer.net.train()
    for step in tqdm(range(cfg.steps), desc="Audio→Expression calibration", unit="step"):
        trainer.step(step)
    trainer.net.eval()
    predicted = trainer.predict(data.features)
    truth = topology.mouth_opening(lip_landmarks(data, data.tracks.expression[tail], tail))
    guess = topology.mouth_opening(lip_landmarks(data, predicted[tail], tail))
    return float(np.clip(truth.std() / max(guess.std(), 1e-6), 1.0, MAX_GAIN))


def train_audio2expression(data: MotionData, cfg: Audio2ExpressionConfig, path: Path, log_dir: Path | None) -> dict:
    """Train (or resume) the lip-sync network on `data` and save it to `path`; return validation metrics."""
    seed_everything(cfg.seed)
    device = pick_device()
    train, val = data.split
    features, coeffs, spans = training_sequences(data, train, cfg.speeds)
    targets = ExpressionTargets.from_data(data, train)
    with single_threaded():
        gain = amplitude_gain(data, cfg, train, device) if cfg.calibrate_amplitude else 1.0
    seed_everything(cfg.seed)  # the network itself starts as it would without the calibration
    trainer = ExpressionTrainer(cfg, torch.from_numpy(features), torch.from_numpy(coeffs), spans, targets, device)

    def eval_fn() -> dict[str, float]:
        predicted = widen(trainer.predict(data.features), targets.coeff_mean.numpy(), gain)
        return evaluate_expressions(data, predicted, val)

    rest = rest_expression(data, train)
    gauge = OpeningGauge.of(data.face_model)
    extra = {
        "coeff_mean": targets.coeff_mean.numpy(),
        "coeff_std": targets.coeff_std.numpy(),
        "amplitude_gain": gain,
        "rest_expression": rest,
        "opening_gauge": dataclasses.asdict(gauge),
        "speaking_opening_spread": speaking_spread(data, gauge, train),
        "feature_blocks": {k: (v.start, v.stop) for k, v in data.features.blocks.items()},
        "in_dim": features.shape[1],
        "n_coeffs": coeffs.shape[1],
    }
    eval_fn_or_none = eval_fn if val.stop > val.start else None
    with single_threaded():
        return run_training(
            path=path,
            model=trainer.net,
            optimizer=trainer.optimizer,
            config=cfg,
            step_fn=trainer.step,
            eval_fn=eval_fn_or_none,
            log_dir=log_dir,
            desc="Audio→Expression",
            progress="motion.expression",
            extra=extra,
            run=data.run_record,
        )


def _on(t: ExpressionTargets, device: torch.device) -> ExpressionTargets:
    return dataclasses.replace(
        t, coeff_mean=t.coeff_mean.to(device), coeff_std=t.coeff_std.to(device), lip_basis=t.lip_basis.to(device)
    )


def _predict(net: TemporalConvNet, targets: ExpressionTargets, features: AudioFeatures, device) -> np.ndarray:
    with torch.no_grad():
        out = net(torch.tensor(features.values, device=device)[None])[0]
    return (out.cpu() * targets.coeff_std + targets.coeff_mean).numpy()


def speaking_spread(data: MotionData, gauge: OpeningGauge, frames: slice) -> float | None:
    """The person's tracked mouth opening's spread over the speaking frames of `frames`: what any voice's
    prediction is widened to (amg.motion.expression.inference.VoiceSpread); None with too little speech."""
    speaking = data.features.vad[frames] >= SILENCE_VAD
    if speaking.sum() < MIN_VOICE_FRAMES:
        return None
    return float(gauge(data.tracks.expression[frames][speaking]).std())


def rest_expression(data: MotionData, train: slice) -> np.ndarray:
    """The avatar's mouth at rest: mean coefficients of its silent training frames with the mouth closed."""
    opening = topology.mouth_opening(data.tracks.landmarks[train])
    closed = opening <= np.percentile(opening, 20)
    silent = data.features.vad[train] < SILENCE_VAD
    chosen = closed & silent if (closed & silent).sum() >= 5 else closed
    return data.tracks.expression[train][chosen].mean(axis=0)


# --- evaluation ------------------------------------------------------------------------------------------------
def lip_landmarks(data: MotionData, coeffs: np.ndarray, frames: slice | np.ndarray) -> np.ndarray:
    """Landmarks in image pixels at 256 for `coeffs`, posed with the tracked head pose of `frames` (a slice or
    frame indices, one per row of `coeffs`)."""
    t = data.tracks
    pose = fitting.HeadPose(
        fitting.rotations_from_rotvecs(t.rotation[frames]),
        t.translation[frames],
        t.scale[frames],
        np.ones(len(coeffs), bool),
    )
    landmarks = fitting.reconstruct_landmarks(data.face_model, pose, coeffs)
    return landmarks * (256 / t.size)


def evaluate_expressions(data: MotionData, predicted: np.ndarray, frames: slice) -> dict[str, float]:
    """Lip error (px at 256), mouth-opening correlation and the opening's spread as a ratio to the tracked one,
    of `predicted` (T, K) against the tracks on `frames`."""
    truth = lip_landmarks(data, data.tracks.expression[frames], frames)
    guess = lip_landmarks(data, predicted[frames], frames)
    lips = np.asarray(topology.LIPS)
    error = np.linalg.norm(guess[:, lips, :2] - truth[:, lips, :2], axis=-1).mean()
    open_true, open_pred = topology.mouth_opening(truth), topology.mouth_opening(guess)
    corr = float(np.corrcoef(open_true, open_pred)[0, 1]) if open_pred.std() > 1e-6 else 0.0
    spread = float(open_pred.std() / open_true.std()) if open_true.std() > 1e-6 else float("nan")
    return {"lips_px": float(error), "opening_corr": corr, "opening_spread_ratio": spread}


def baseline_predictions(data: MotionData, train: slice, context: int = 2) -> dict[str, np.ndarray]:
    """Two baselines over all frames: the mean expression, and nearest-neighbour audio lookup.

    The lookup compares a ±`context`-frame window of features with every training frame's and copies the
    expression of the nearest one: what a network must beat to show it learned more than a lookup table.
    """
    coeffs = data.tracks.expression
    mean = np.broadcast_to(coeffs[train].mean(axis=0), coeffs.shape)
    padded = np.pad(data.features.values, ((context, context), (0, 0)), mode="edge")
    windows = np.concatenate([padded[i : i + len(coeffs)] for i in range(2 * context + 1)], axis=1)
    bank = windows[train]
    # Squared distances via the expansion |a|² - 2ab + |b|²; one matrix product instead of a Python loop.
    d2 = (windows**2).sum(1)[:, None] - 2 * windows @ bank.T + (bank**2).sum(1)[None, :]
    nearest = coeffs[train][np.argmin(d2, axis=1)]
    return {"mean_expression": mean, "nearest_audio": nearest}
