"""The image GAN's networks: a U-Net generator with a cached static branch, and two discriminators.

Generator inputs come in two groups (see amg.gan.inputs):

    dynamic  changes every frame: the conditioning of frames t-c..t+c and the training frame nearest in head
             pose (its RGB and its conditioning);
    static   the same for every frame of an avatar: the background plate and the fixed reference frames
             (mouth closed / half open / wide open, RGB + conditioning).

The first layer is linear, so its response to the static inputs is a fixed map that is computed once per
avatar at inference (`Generator.encode_static`) and added to the dynamic response: the references cost
nothing per frame. The output is an RGB image and a matte; the frame is the matte's blend of the generated
person over the background plate, so the background stays exactly the plate (no flicker, no wasted capacity).

No normalisation layers in the generator: training batches are a few strongly correlated frames, and without
batch statistics training and inference compute the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def level_channels(ngf: int, max_channels: int, n_levels: int) -> list[int]:
    """Channels of each U-Net level (level i works at size / 2**(i+1))."""
    return [min(ngf * 2**i, max_channels) for i in range(n_levels)]


class DownBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))


class UpBlock(nn.Sequential):
    """Nearest upsampling + 3x3 conv: no checkerboard artefacts (unlike a transposed conv)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1))


class Generator(nn.Module):
    def __init__(self, dynamic_channels: int, static_channels: int, ngf: int, max_channels: int, n_levels: int):
        super().__init__()
        ch = level_channels(ngf, max_channels, n_levels)
        self.dynamic_in = nn.Conv2d(dynamic_channels, ch[0], 4, stride=2, padding=1)
        self.static_in = nn.Conv2d(static_channels, ch[0], 4, stride=2, padding=1, bias=False)
        self.down = nn.ModuleList(DownBlock(ch[i - 1], ch[i]) for i in range(1, n_levels))
        # Decoder level i takes the level below (upsampled) concatenated with encoder level i's skip.
        self.up = nn.ModuleList(
            UpBlock(ch[i + 1] if i == n_levels - 2 else 2 * ch[i + 1], ch[i]) for i in range(n_levels - 1)
        )
        # The last step to full resolution: a transposed conv is 2.3x cheaper than upsample + conv there.
        self.to_frame = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * ch[0], 4, 4, stride=2, padding=1))

    def encode_static(self, static: torch.Tensor) -> torch.Tensor:
        """The first layer's response to the static inputs (1 or B, Cs, H, W) → (…, ch0, H/2, W/2)."""
        return self.static_in(static)

    def forward(self, dynamic: torch.Tensor, static_code: torch.Tensor, background: torch.Tensor) -> tuple:
        """dynamic (B, Cd, H, W), static_code from encode_static, background (1|B, 3, H, W) in [-1, 1].

        Returns (frame, matte): frame (B, 3, H, W) in [-1, 1], the matte (B, 1, H, W) in [0, 1].
        """
        skips = [self.dynamic_in(dynamic) + static_code]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = torch.cat([self.up[i](x), skips[i]], dim=1)
        out = self.to_frame(x)
        rgb, matte = torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])
        return matte * rgb + (1 - matte) * background, matte


class PatchDiscriminator(nn.Module):
    """pix2pix's 70x70 PatchGAN (spectral-normalised); returns every layer's features for feature matching."""

    def __init__(self, c_in: int, ndf: int, n_layers: int = 3):
        super().__init__()
        layers, c = [], c_in
        for i in range(n_layers + 1):
            c_out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers.append(nn.Sequential(spectral_norm(nn.Conv2d(c, c_out, 4, stride, 1)), nn.LeakyReLU(0.2)))
            c = c_out
        layers.append(spectral_norm(nn.Conv2d(c, 1, 4, 1, 1)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs on the image at full, half, ... resolution (pix2pixHD): fine texture and global layout."""

    def __init__(self, c_in: int, ndf: int, n_scales: int):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(c_in, ndf) for _ in range(n_scales))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


class TemporalDiscriminator(nn.Module):
    """A 3-D conv PatchGAN over short clips at half resolution: judges motion (flicker, jumps), not texture."""

    def __init__(self, c_in: int, ndf: int):
        super().__init__()

        def block(c_i: int, c_o: int) -> nn.Module:
            conv = nn.Conv3d(c_i, c_o, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1))
            return nn.Sequential(spectral_norm(conv), nn.LeakyReLU(0.2))

        self.layers = nn.ModuleList(
            [block(c_in, ndf), block(ndf, 2 * ndf), block(2 * ndf, 4 * ndf), spectral_norm(nn.Conv3d(4 * ndf, 1, 3, 1, 1))]
        )

    def forward(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """clip (B, C, T, H, W) → features of every layer; the last is the patch logits."""
        x = F.avg_pool3d(clip, (1, 2, 2))
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


def count_flops(model: nn.Module, *inputs: torch.Tensor) -> float:
    """Floating-point operations of one forward pass (multiply-adds count as 2), measured by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return float(counter.get_total_flops())
