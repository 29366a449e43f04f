"""The face refiner: a small residual U-Net on the upsampled face crop; output = input + learned detail.

It starts as the identity (the last convolution is zero-initialised), so training only ever adds what the
avatar's real face has and the generator's output lacks: crisp teeth and lip edges, skin texture, no grid.
Upsampling is nearest + 3x3 conv: a transposed convolution would add the checkerboard it is meant to remove.
No normalisation, as in the generator: batches are a few frames of one face.
"""

from __future__ import annotations

import torch
from torch import nn

from amg.gan.networks import DownBlock, UpBlock


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Refiner(nn.Module):
    def __init__(self, ngf: int, n_blocks: int):
        super().__init__()
        self.stem = nn.Conv2d(3, ngf, 3, padding=1)
        self.down1 = DownBlock(ngf, 2 * ngf)
        self.down2 = DownBlock(2 * ngf, 4 * ngf)
        self.blocks = nn.Sequential(*(_Residual(4 * ngf) for _ in range(n_blocks)))
        self.up2 = UpBlock(4 * ngf, 2 * ngf)
        self.up1 = UpBlock(4 * ngf, ngf)
        self.to_detail = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(2 * ngf, 3, 3, padding=1))
        nn.init.zeros_(self.to_detail[1].weight)
        nn.init.zeros_(self.to_detail[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1], S a multiple of 4 → the refined crop, same shape and range."""
        e0 = self.stem(x)
        e1 = self.down1(e0)
        d1 = self.up2(self.blocks(self.down2(e1)))
        d0 = self.up1(torch.cat([d1, e1], dim=1))
        return (x + self.to_detail(torch.cat([d0, e0], dim=1))).clamp(-1, 1)
