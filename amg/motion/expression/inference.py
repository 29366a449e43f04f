"""Audio→Expression (lip-sync) at inference: the trained temporal conv net from audio features to the avatar's
expression coefficients, with the mouth eased to rest in silence. Its training is amg.motion.expression.train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from amg.audio.features import AudioFeatures
from amg.config import Audio2ExpressionConfig, config_from_dict
from amg.core.checkpoints import load_checkpoint
from amg.core.device import pick_device
from amg.motion.expression.networks import TemporalConvNet
from amg.tracking import smoothing

# Below this speech probability a frame counts as silence.
SILENCE_VAD = 0.2
# Pauses up to this long are the network's: in talking videos the mouth holds where the phrase left it (on
# obama_clip2, andrew_ng_clip1, kristi_noem and cnn_anchor_71s the silent training frames' mouths are as open
# as the speaking ones', and pauses of 0.4-1.3 s are common). Longer silences ease the mouth to rest.
LONG_SILENCE_FRAMES = 25  # 1 s at 25 fps


def build_network(cfg: Audio2ExpressionConfig, in_dim: int, n_coeffs: int) -> TemporalConvNet:
    return TemporalConvNet(in_dim, n_coeffs, cfg.hidden, cfg.dilations, cfg.dropout)


def silence_so_far(vad: np.ndarray) -> np.ndarray:
    """Per frame, how many frames the silence it lies in has lasted up to it (0 in speech)."""
    silent = vad < SILENCE_VAD
    index = np.arange(len(vad))
    last_speech = np.maximum.accumulate(np.where(silent, -1, index))
    return index - last_speech


def gate_silence(coeffs: np.ndarray, vad: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Blend towards the rest expression in long silences, with soft (smoothed) transitions.

    The network has seen few long silences in one avatar video; without the gate, silence or music can leave
    the mouth half open or mumbling. A pause shorter than LONG_SILENCE_FRAMES keeps the network's mouth (closing
    every pause cost mouth-opening correlation on all four clips measured, and lip error on three), a longer
    one eases shut over ±0.2 s from then on, and opens again as speech resumes.
    """
    resting = (silence_so_far(vad) >= LONG_SILENCE_FRAMES).astype(float)[:, None]
    weight = np.clip(smoothing.smooth_series(resting, 11, 1), 0, 1)
    return coeffs + weight * (rest - coeffs)


def widen(coeffs: np.ndarray, mean: np.ndarray, gain: float) -> np.ndarray:
    """Coefficients moved `gain` times as far from the avatar's mean expression (the calibrated amplitude)."""
    return mean + gain * (coeffs - mean)


class Audio2ExpressionModel:
    """A trained lip-sync network ready for inference."""

    def __init__(self, path: Path, device: torch.device | None = None):
        state = load_checkpoint(path)
        self.cfg = config_from_dict(Audio2ExpressionConfig, state["config"])
        self.device = device or pick_device()
        self.net = build_network(self.cfg, state["in_dim"], state["n_coeffs"]).to(self.device).eval()
        self.net.load_state_dict(state["model"])
        self.coeff_mean = torch.tensor(state["coeff_mean"])
        self.coeff_std = torch.tensor(state["coeff_std"])
        # Avatars trained before the calibration have none: their mouths move as the network predicts.
        self.gain = float(state.get("amplitude_gain", 1.0))
        self.rest = np.asarray(state["rest_expression"])
        self.feature_blocks = state["feature_blocks"]

    def __call__(self, features: AudioFeatures) -> np.ndarray:
        """(T, K) expression coefficients for the frames of `features`, mouth at rest in silence."""
        blocks = {k: (v.start, v.stop) for k, v in features.blocks.items()}
        if blocks != self.feature_blocks:
            raise ValueError("Audio features were computed with another configuration than the model's.")
        with torch.no_grad():
            out = self.net(torch.tensor(features.values, device=self.device)[None])[0].cpu()
        coeffs = (out * self.coeff_std + self.coeff_mean).numpy()
        return gate_silence(widen(coeffs, self.coeff_mean.numpy(), self.gain), features.vad, self.rest)
