"""The motion stage's networks (training loops live in expression.py / headpose.py)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualTemporalBlock(nn.Module):
    """Dilated 1-D convolution over time with a residual connection; keeps the sequence length."""

    def __init__(self, channels: int, dilation: int, kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2),
            nn.GroupNorm(1, channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TemporalConvNet(nn.Module):
    """(B, T, D_in) → (B, T, D_out), each output frame seeing ±`receptive_radius` input frames (non-causal).

    Lip shapes depend on the sounds before and after (co-articulation: lips round before an /u/ is heard), so
    the context is symmetric; with dilations 1, 2, 4, 8, 1 and kernel 3 it spans ±16 frames (±0.64 s).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int, dilations: tuple[int, ...], dropout: float):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, hidden, 1)
        self.blocks = nn.Sequential(*(ResidualTemporalBlock(hidden, d, dropout=dropout) for d in dilations))
        self.out = nn.Conv1d(hidden, out_dim, 1)
        self.receptive_radius = sum(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x.transpose(1, 2)))).transpose(1, 2)
