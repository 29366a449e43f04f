"""The image GAN's networks: a U-Net that blends and refines warped candidate frames, and two discriminators.

The generator does not paint the frame: its inputs hold K real frames of the avatar already warped onto the
target landmarks (amg.gan.inputs), and it outputs, per pixel, blend weights over them, a colour residual and a
correction of the blended candidates' matte. The frame is that matte's blend of the refined person over the
background plate, so the background stays exactly the plate (no flicker, no wasted capacity):

    person = sum_k softmax(w)_k * candidate_k + residual + sum_k (softmax(s * w)_k - softmax(w)_k) * band(candidate_k)
    matte  = sigmoid(logit(sum_k softmax(w)_k * matte_k) + delta)
    frame  = matte * person + (1 - matte) * background

`band` keeps an image's finest detail (itself less its 2x-pooled, re-upsampled copy) and `s` is the detail
sharpness: the candidates' coarse picture is blended with the weights, their fine texture (pores, lashes, lip
edges, teeth) with s-times sharper ones, so it comes from nearly one candidate where a soft blend of several
slightly misaligned candidates would average it away (s = 1: the plain blend). Each candidate's own band is
blended: the band of the blends' difference (one band instead of K) drew thin edges where the sharper weights
switch between candidates of different colour.

The output layer starts at zero with the blend biased to the first candidate (the nearest face), so an
untrained generator already renders about the warp of that candidate: training starts at the warp baseline, not
at grey. Its heads are computed at half resolution and upsampled bilinearly: the fields they carry are smooth,
the detail comes from the candidates' own pixels, and no transposed or nearest-upsampled convolution at full
resolution can draw a grid (tests/test_gan.py checks the spectrum).

The static input (the background plate) goes through the linear first layer once per avatar at inference
(`Generator.encode_static`), so it costs nothing per frame. No normalisation layers: training batches are a few
strongly correlated frames, and without batch statistics training and inference compute the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from amg.config import GanConfig
from amg.gan.inputs import CANDIDATE_CHANNELS, GeneratorInputs

# Initial blend logit of the first candidate over the others: softmax weight 0.96 for K = 3.
FIRST_CANDIDATE_BIAS = 4.0
_MATTE_EPS = 1e-3


def level_channels(ngf: int, max_channels: int, n_levels: int) -> list[int]:
    """Channels of each U-Net level (level i works at size / 2**(i+1))."""
    return [min(ngf * 2**i, max_channels) for i in range(n_levels)]


class DownBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))


class UpBlock(nn.Sequential):
    """Bilinear upsampling + 3x3 conv: no checkerboard artefacts (unlike a transposed conv)."""

    def __init__(self, c_in: int, c_out: int):
        upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        super().__init__(nn.ReLU(), upsample, nn.Conv2d(c_in, c_out, 3, padding=1))


class Generator(nn.Module):
    def __init__(
        self,
        n_candidates: int,
        dynamic_channels: int,
        static_channels: int,
        ngf: int,
        max_channels: int,
        n_levels: int,
        detail_sharpness: float,
    ):
        super().__init__()
        self.n_candidates = n_candidates
        self.detail_sharpness = detail_sharpness
        ch = level_channels(ngf, max_channels, n_levels)
        self.dynamic_in = nn.Conv2d(dynamic_channels, ch[0], 4, stride=2, padding=1)
        self.static_in = nn.Conv2d(static_channels, ch[0], 4, stride=2, padding=1, bias=False)
        self.down = nn.ModuleList(DownBlock(ch[i - 1], ch[i]) for i in range(1, n_levels))
        # Decoder level i takes the level below (upsampled) concatenated with encoder level i's skip.
        self.up = nn.ModuleList(
            UpBlock(ch[i + 1] if i == n_levels - 2 else 2 * ch[i + 1], ch[i]) for i in range(n_levels - 1)
        )
        # Blend logits (K), colour residual (3), matte correction (1), at half resolution.
        self.heads = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * ch[0], n_candidates + 4, 3, padding=1))
        nn.init.zeros_(self.heads[1].weight)
        nn.init.zeros_(self.heads[1].bias)
        with torch.no_grad():
            self.heads[1].bias[0] = FIRST_CANDIDATE_BIAS

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
        heads = F.interpolate(self.heads(x), scale_factor=2, mode="bilinear", align_corners=False)
        k = self.n_candidates
        logits = heads[:, :k]
        weights = channel_softmax(logits)
        # Each candidate's planes as views of the input (no copy in float32, in any memory format; a reduced-precision
        # input's planes are made float32, exact, so that the blend and the matte compute in float32), summed over
        # candidates in order.
        starts = [i * CANDIDATE_CHANNELS for i in range(k)]
        rgb = [dynamic[:, s : s + 3].float() for s in starts]
        mattes = [dynamic[:, s + CANDIDATE_CHANNELS - 1 : s + CANDIDATE_CHANNELS].float() for s in starts]
        person = sum(weights[:, i : i + 1] * rgb[i] for i in range(k)) + heads[:, k : k + 3]
        if self.detail_sharpness != 1:
            sharper = channel_softmax(logits * self.detail_sharpness) - weights
            person = person + sum(sharper[:, i : i + 1] * finest_band(rgb[i]) for i in range(k))
        warped_matte = sum(weights[:, i : i + 1] * (mattes[i] + 1) / 2 for i in range(k))
        warped_matte = warped_matte.clamp(_MATTE_EPS, 1 - _MATTE_EPS)
        logit = torch.log(warped_matte) - torch.log1p(-warped_matte)  # torch.logit has no ONNX export
        matte = torch.sigmoid(logit + heads[:, k + 3 :])
        frame = matte * person.clamp(-1, 1) + (1 - matte) * background
        return frame, matte


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The softmax over the channels of a (B, C, H, W) tensor. Exported to ONNX as its parts: ONNX Runtime's
    Softmax over the channel axis transposes the tensor around it (4 channels at 512 px: 45 ms a frame, its parts
    3 ms; the same numbers within 2e-7)."""
    if torch.onnx.is_in_onnx_export():
        exp = (logits - logits.amax(1, keepdim=True)).exp()
        return exp / exp.sum(1, keepdim=True)
    return torch.softmax(logits, dim=1)


def finest_band(image: torch.Tensor) -> torch.Tensor:
    """`image` less its 2x-pooled, bilinearly re-upsampled copy: the detail finer than the blend weights' own
    half resolution."""
    # A candidate is a 3-channel view into the channels-last input: pooling and upsampling it in place reads
    # every channel of every pixel, so it is copied out first (the generator 16.7 against 19.8 ms a 256-px frame).
    image = image.contiguous(memory_format=torch.contiguous_format)
    coarse = F.interpolate(F.avg_pool2d(image, 2), scale_factor=2, mode="bilinear", align_corners=False)
    return image - coarse


def build_generator(cfg: GanConfig, inputs: GeneratorInputs) -> Generator:
    return Generator(
        cfg.n_candidates,
        inputs.dynamic_channels,
        inputs.static_channels,
        cfg.ngf,
        cfg.max_channels,
        cfg.n_levels,
        cfg.detail_sharpness,
    )


class PatchDiscriminator(nn.Module):
    """pix2pix's 70x70 PatchGAN; returns every layer's features for feature matching. `spectral`: each
    convolution spectral-normalised."""

    def __init__(self, c_in: int, ndf: int, n_layers: int = 3, spectral: bool = True):
        super().__init__()
        norm = spectral_norm if spectral else (lambda conv: conv)
        layers, c = [], c_in
        for i in range(n_layers + 1):
            c_out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers.append(nn.Sequential(norm(nn.Conv2d(c, c_out, 4, stride, 1)), nn.LeakyReLU(0.2)))
            c = c_out
        layers.append(norm(nn.Conv2d(c, 1, 4, 1, 1)))
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
            [
                block(c_in, ndf),
                block(ndf, 2 * ndf),
                block(2 * ndf, 4 * ndf),
                spectral_norm(nn.Conv3d(4 * ndf, 1, 3, 1, 1)),
            ]
        )

    def forward(self, frames: torch.Tensor, length: int) -> list[torch.Tensor]:
        """frames (B*T, C, H, W), B clips of T consecutive frames → features of every layer; the last is the patch
        logits (B, 1, T, h, w). Each frame is halved before it is made a clip: the same numbers as pooling the
        clip, on a 4x smaller tensor (and in any memory format)."""
        half = F.avg_pool2d(frames, 2)
        x = half.reshape(-1, length, *half.shape[1:]).transpose(1, 2)  # (B, C, T, H/2, W/2)
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
