"""Audio→Head-pose network: an autoregressive mixture density network (training loop in headpose.py).

Per frame t it gives a Gaussian mixture over the standardised head pose z_t (6-d), conditioned on
    * the audio around t: one non-causal convolution over ±`audio_context` frames, computed for every frame in
      one batched pass (at inference too: only the small history part runs frame by frame);
    * the past `history` poses z_{t-history} … z_{t-1} (teacher-forced in training, the model's own samples
      at inference): the last one, pulled towards the mean pose by a learned leak, plus the steps between
      them, which the MLP sees (see `Audio2PoseNet`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# Lower bound on the mixture's log standard deviation: a component collapsing onto one training frame would
# drive the likelihood to infinity.
MIN_LOG_STD = -6.0
# Gain on the history's frame-to-frame steps (see Audio2PoseNet.forward).
STEP_GAIN = 10.0
# Activations are SiLU: GELU's shape, but exact GELU costs ~5x more per call on the tiny per-frame tensors of
# the sampling loop.
# Initial per-frame pull of the pose towards the mean: 2% a frame, a time constant of 2 s at 25 fps.
INITIAL_LEAK = 0.02


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
        self.conv = nn.Conv1d(in_dim, hidden, 2 * context + 1)
        self.mix = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Conv1d(hidden, hidden, 1), nn.SiLU())

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
    """Audio features + pose history → Gaussian mixture over the next standardised pose.

    Component means are `(1 - leak) * z_{t-1} + offset_k`: the offsets come from an MLP that sees the audio and
    the history's frame-to-frame steps but never the absolute pose, and `leak` (0-1, learned per pose component)
    pulls the pose towards the mean (z = 0). So the dynamics cannot learn a push away from the mean that
    grows with the distance (what makes a sampled trajectory drift), and they do not depend on where in its
    range the head is: 30 s of video do not show every pose, and an MLP fed absolute poses fails on the others.
    """

    def __init__(
        self,
        audio_dim: int,
        pose_dim: int,
        hidden: int,
        history: int,
        audio_context: int,
        n_mixtures: int,
        dropout: float,
    ):
        super().__init__()
        self.pose_dim, self.history, self.n_mixtures = pose_dim, history, n_mixtures
        self.audio = AudioEncoder(audio_dim, hidden, audio_context, dropout)
        self.past = nn.Sequential(nn.Linear((history - 1) * pose_dim, hidden), nn.SiLU())
        self.trunk = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.SiLU()
        )
        self.head = nn.Linear(hidden, n_mixtures * (1 + 2 * pose_dim))
        initial = torch.full((pose_dim,), INITIAL_LEAK)
        self.leak_logit = nn.Parameter(torch.log(initial / (1 - initial)))

    def encode_audio(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D_in) audio features → (B, T, H) per-frame audio codes."""
        return self.audio(features)

    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, 2 audio_context + 1, D_in) feature windows → (N, H) codes of their centre frames."""
        return self.audio.windows(windows)

    def forward(self, audio_code: torch.Tensor, history: torch.Tensor) -> Mixture:
        """audio_code (N, H) of the predicted frames, history (N, history, D) of the poses before each."""
        # Steps are ~10x smaller than poses: the gain brings them to the scale the initialisation expects.
        steps = (history[:, 1:] - history[:, :-1]) * STEP_GAIN
        out = self.head(self.trunk(torch.cat([audio_code, self.past(steps.flatten(1))], dim=1)))
        k, d = self.n_mixtures, self.pose_dim
        logits, offset, log_std = out.split([k, k * d, k * d], dim=1)
        kept = (1 - torch.sigmoid(self.leak_logit)) * history[:, -1]
        return Mixture(logits, kept[:, None] + offset.view(-1, k, d), log_std.view(-1, k, d).clamp(min=MIN_LOG_STD))


def mixture_nll(mixture: Mixture, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of targets (N, D) under the mixtures, per pose dimension (nats)."""
    z = (target[:, None, :] - mixture.mean) * torch.exp(-mixture.log_std)
    log_component = -0.5 * (z**2).sum(-1) - mixture.log_std.sum(-1)
    log_prob = torch.logsumexp(torch.log_softmax(mixture.logits, dim=1) + log_component, dim=1)
    return -(log_prob.mean() / target.shape[1]) + 0.5 * math.log(2 * math.pi)


def sample_mixture(
    mixture: Mixture,
    gumbel: torch.Tensor,
    normal: torch.Tensor,
    temperature: float,
    std_scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """One pose (N, D) per mixture from given noise: gumbel (N, K), normal (N, D).

    The component is argmax(logits + temperature * gumbel) (the Gumbel-max trick: an exact draw from the
    weights at temperature 1, the most likely component at 0), and the pose its mean plus temperature *
    std_scale (a number, or one per pose dimension) * std * normal. Taking the noise as input keeps sampling
    reproducible and free of per-frame RNG calls.
    """
    component = torch.argmax(mixture.logits + temperature * gumbel, dim=1)
    rows = torch.arange(len(component))
    mean, log_std = mixture.mean[rows, component], mixture.log_std[rows, component]
    return mean + temperature * std_scale * torch.exp(log_std) * normal
