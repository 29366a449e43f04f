"""Audio→Expression (lip-sync) at inference: the trained temporal conv net from audio features to the avatar's
expression coefficients, at the person's own amplitude whatever the voice, with the mouth eased to rest in
silence. Its training is amg.motion.expression.train."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amg.audio.features import AudioFeatures
from amg.config import Audio2ExpressionConfig, config_from_dict
from amg.core.checkpoints import load_checkpoint
from amg.core.device import pick_device
from amg.motion.expression.networks import TemporalConvNet
from amg.tracking import smoothing, topology

# Below this speech probability a frame counts as silence.
SILENCE_VAD = 0.2
# Pauses up to this long are the network's: in talking videos the mouth holds where the phrase left it (on
# obama_clip2, andrew_ng_clip1, kristi_noem and cnn_anchor_71s the silent training frames' mouths are as open
# as the speaking ones', and pauses of 0.4-1.3 s are common). Longer silences ease the mouth to rest.
LONG_SILENCE_FRAMES = 25  # 1 s at 25 fps
# A voice the network has not heard (another speaker, another language, a telephone line) makes it move the mouth
# less than the person's own unseen speech does, which the calibrated gain was fitted on: in 7 of 12 pairs of
# four avatars and three voices, the opening's spread over speaking frames came out 0.86-0.97x the person's
# (docs/decisions.md, "The voice's amplitude"). So the mouth is widened further until its spread over the voice's
# speaking frames reaches the person's tracked one, by at most MAX_VOICE_GAIN, measured once there are
# MIN_VOICE_FRAMES speaking frames and over at most VOICE_FRAMES of them. A voice that moves it more keeps its
# emphasis (no narrowing).
MAX_VOICE_GAIN = 1.3
MIN_VOICE_FRAMES = 50
VOICE_FRAMES = 1500
VOICE_SPAN = 2 * VOICE_FRAMES  # a recording's frames searched for them (its speech's first 2 minutes)


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


@dataclass(frozen=True)
class OpeningGauge:
    """The gap between the inner lips (topology.mouth_opening, head units) of expression coefficients: the face
    model's rows of the facing inner-lip points, saved with the network so that it measures without the model."""

    neutral: np.ndarray  # (P, 3): the points of topology.INNER_LIP_VERTICAL_PAIRS, pair by pair
    mean: np.ndarray  # (P * 3,)
    basis: np.ndarray  # (K, P * 3)

    @classmethod
    def of(cls, face_model) -> OpeningGauge:
        points = topology.INNER_LIP_VERTICAL_PAIRS.reshape(-1)
        columns = (3 * points[:, None] + np.arange(3)).reshape(-1)
        return cls(face_model.neutral[points], face_model.mean[columns], face_model.basis[:, columns])

    def __call__(self, coeffs: np.ndarray) -> np.ndarray:
        """(T, K) coefficients -> (T,) openings."""
        points = self.neutral + (self.mean + np.asarray(coeffs, float) @ self.basis).reshape(len(coeffs), -1, 3)
        return topology.mouth_opening(points, np.arange(len(self.neutral)).reshape(-1, 2))


class VoiceSpread:
    """The spread of a voice's mouth opening (at the calibrated amplitude) over its first VOICE_FRAMES speaking
    frames: a recording's measured before its motion is made, a live stream's as they come."""

    def __init__(self):
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, openings: np.ndarray, vad: np.ndarray) -> None:
        speaking = openings[vad >= SILENCE_VAD][: VOICE_FRAMES - self.count]
        self.count += len(speaking)
        self.total += float(speaking.sum())
        self.squares += float(np.square(speaking).sum())

    @property
    def full(self) -> bool:
        return self.count >= VOICE_FRAMES

    @property
    def std(self) -> float | None:
        """None until MIN_VOICE_FRAMES speaking frames were seen."""
        if self.count < MIN_VOICE_FRAMES:
            return None
        mean = self.total / self.count
        return float(np.sqrt(max(self.squares / self.count - mean**2, 0.0)))


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
        # Avatars trained before the voice's amplitude was matched have neither: their gain stays the calibrated.
        gauge = state.get("opening_gauge")
        self.gauge = OpeningGauge(**gauge) if gauge is not None else None
        self.speaking_spread = state.get("speaking_opening_spread")

    def calibrated(self, features: AudioFeatures) -> np.ndarray:
        """(T, K) expression coefficients for the frames of `features` at the calibrated amplitude."""
        blocks = {k: (v.start, v.stop) for k, v in features.blocks.items()}
        if blocks != self.feature_blocks:
            raise ValueError("Audio features were computed with another configuration than the model's.")
        with torch.no_grad():
            out = self.net(torch.tensor(features.values, device=self.device)[None])[0].cpu()
        coeffs = (out * self.coeff_std + self.coeff_mean).numpy()
        return widen(coeffs, self.coeff_mean.numpy(), self.gain)

    def measure(self, spread: VoiceSpread, coeffs: np.ndarray, vad: np.ndarray) -> None:
        """Add calibrated coefficients of a voice (and their speech probabilities) to its `spread`."""
        if self.gauge is not None and not spread.full:
            spread.add(self.gauge(coeffs), vad)

    def voice_of(self, features: AudioFeatures) -> VoiceSpread:
        """The spread of a recording's voice, over the speaking frames of its first VOICE_SPAN frames."""
        spread, head = VoiceSpread(), features.take(slice(0, VOICE_SPAN))
        self.measure(spread, self.calibrated(head), head.vad)
        return spread

    def voice_gain(self, spread: VoiceSpread) -> float:
        """How much further than calibrated the voice measured in `spread` moves the mouth (1 until measured)."""
        if spread.std is None or self.speaking_spread is None:
            return 1.0
        return float(np.clip(self.speaking_spread / max(spread.std, 1e-6), 1.0, MAX_VOICE_GAIN))

    def finish(self, coeffs: np.ndarray, vad: np.ndarray, voice_gain: float) -> np.ndarray:
        """Calibrated coefficients widened by `voice_gain`, the mouth at rest in long silences."""
        return gate_silence(widen(coeffs, self.coeff_mean.numpy(), voice_gain), vad, self.rest)

    def __call__(self, features: AudioFeatures) -> np.ndarray:
        """(T, K) expression coefficients for the frames of `features`, at the person's amplitude for this voice
        (measured on its first VOICE_FRAMES speaking frames), mouth at rest in silence."""
        gain = self.voice_gain(self.voice_of(features))
        return self.finish(self.calibrated(features), features.vad, gain)
