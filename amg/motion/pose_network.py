"""Audio→Head-pose network: an autoregressive mixture density network (training loop in headpose.py).

Per frame t it gives a Gaussian mixture over the standardised head pose z_t (6-d), conditioned on
    * the audio around t: one non-causal convolution over ±`audio_context` frames, computed for every frame in
      one batched pass (at inference too: only the small history part runs frame by frame);
    * the past `history` poses z_{t-history} … z_{t-1} (teacher-forced in training, the model's own samples
      at inference).
"""

from __future__ import annotations

from dataclasses import dataclass
import os

import torch
from torch import nn
from torch.nn import functional as F

# Lower bound on the mixture's log standard deviation: a component collapsing onto one training frame would
# drive the likelihood to infinity.
MIN_LOG_STD = -6.0
# Gain on the history's frame-to-frame steps (see Audio2PoseNet.__init__).
STEP_GAIN = 10.0
import os
RESIDUAL = bool(int(os.environ.get('RESIDUAL', '0')))


@dataclass
class Mixture:
    """Diagonal Gaussian mixture over the next pose, batched over N frames."""

    logits: torch.Tensor  # (N, K) unnormalised log mixture weights
    mean: torch.Tensor  # (N, K, D)
    log_std: torch.Tensor  # (N, K, D)


class AudioEncoder(nn.Module):
    """Audio features → per-frame codes (H,), each from exactly ±`context` frames of input."""

    def __init__(self, in_dim: int, hidden: int, context: int, dropout: float):
        super().__init__()
        self.context = context
        bn = int(os.environ.get('BN', '0'))
        self.conv = nn.Sequential(nn.Conv1d(in_dim, bn, 1), nn.Conv1d(bn, hidden, 2 * context + 1)) if bn else nn.Conv1d(in_dim, hidden, 2 * context + 1)
        self.mix = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Conv1d(hidden, hidden, 1), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D_in) whole sequences → (B, T, H)."""
        # Replicate padding: zero features would read as a loud voice (energy 0 = the speech level).
        padded = F.pad(x.transpose(1, 2), (self.context, self.context), mode="replicate")
        return self.mix(self.conv(padded)).transpose(1, 2)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2 context + 1, D_in) windows centred on N frames → (N, H): training needs only a batch of
        frames, not the whole video."""
        return self.mix(self.conv(x.transpose(1, 2)))[..., 0]


class Audio2PoseNet(nn.Module):
    """Audio features + pose history → Gaussian mixture over the next standardised pose."""

    def __init__(
        self, audio_dim: int, pose_dim: int, hidden: int, history: int, audio_context: int, n_mixtures: int,
        dropout: float,
    ):  # fmt: skip
        super().__init__()
        self.pose_dim, self.history, self.n_mixtures = pose_dim, history, n_mixtures
        self.audio = AudioEncoder(audio_dim, hidden, audio_context, dropout)
        # The history enters as the last pose plus the frame-to-frame steps before it: steps are ~10x smaller
        # than poses, and handing them over explicitly spares the MLP learning small differences of large inputs.
        self.past = nn.Sequential(nn.Linear(history * pose_dim, hidden), nn.GELU())
        self.trunk = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.head = nn.Linear(hidden, n_mixtures * (1 + 2 * pose_dim))

    def encode_audio(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D_in) audio features → (B, T, H) per-frame audio codes."""
        return self.audio(features)

    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, 2 audio_context + 1, D_in) feature windows → (N, H) codes of their centre frames."""
        return self.audio.windows(windows)

    def forward(self, audio_code: torch.Tensor, history: torch.Tensor) -> Mixture:
        """audio_code (N, H) of the predicted frames, history (N, history, D) of the poses before each."""
        last = history[:, -1]
        steps = (history[:, 1:] - history[:, :-1]) * STEP_GAIN
        past = self.past(torch.cat([last, steps.flatten(1)], dim=1))
        out = self.head(self.trunk(torch.cat([audio_code, past], dim=1)))
        k, d = self.n_mixtures, self.pose_dim
        logits, mean, log_std = out.split([k, k * d, k * d], dim=1)
        # Means are absolute standardised poses (the net sees the last pose and must reproduce it), not steps
        # added to it: a sampled trajectory is then not an integral of noise, so it does not random-walk away.
        return Mixture(logits, mean.view(-1, k, d) + (last[:, None] if RESIDUAL else 0), log_std.view(-1, k, d).clamp(min=MIN_LOG_STD))


def mixture_nll(mixture: Mixture, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of targets (N, D) under the mixtures, per pose dimension (nats)."""
    z = (target[:, None, :] - mixture.mean) * torch.exp(-mixture.log_std)
    log_component = -0.5 * (z**2).sum(-1) - mixture.log_std.sum(-1)
    log_prob = torch.logsumexp(torch.log_softmax(mixture.logits, dim=1) + log_component, dim=1)
    d = target.shape[1]
    return -(log_prob.mean() / d) + 0.5 * float(torch.log(torch.tensor(2 * torch.pi)))


def sample_mixture(mixture: Mixture, gumbel: torch.Tensor, normal: torch.Tensor, temperature: float) -> torch.Tensor:
    """One pose (N, D) per mixture from given noise: gumbel (N, K), normal (N, D).

    The component is argmax(logits + temperature * gumbel) (the Gumbel-max trick: an exact draw from the
    weights at temperature 1, the most likely component at 0), and the pose its mean plus temperature * std
    * normal. Taking the noise as input keeps sampling reproducible and free of per-frame RNG calls.
    """
    component = torch.argmax(mixture.logits + temperature * gumbel, dim=1)
    rows = torch.arange(len(component))
    mean, log_std = mixture.mean[rows, component], mixture.log_std[rows, component]
    return mean + temperature * torch.exp(log_std) * normal
