"""Shift-tolerant LPIPS (ST-LPIPS, AlexNet trunk): a perceptual distance that works offline, without torchvision.

Why it is built here rather than imported: the PyPI wheel `stlpips-pytorch==0.0.2` ships the trained weights
(`weights/vST0.0/alex_shift_tolerant.pth`: the whole blur-pooled AlexNet trunk *and* the linear heads, so
nothing is downloaded), but its modules import torchvision, IPython and torchsummary at import time. We install
it with `pip install --no-deps stlpips-pytorch==0.0.2`, never import it, locate the file with
`importlib.util.find_spec` (which does not run a top-level package) and load it into the small re-implementation
below, layer for layer the package's `LPIPS(net="alex", variant="shift_tolerant")` in eval mode.

The network: inputs in [-1, 1] are shifted and scaled per channel, then an AlexNet whose strided conv and max
pools are replaced by stride-1 ops followed by a reflect-padded 3x3 binomial blur with stride 2 (anti-aliased
downsampling, which makes the features tolerant to small shifts). The five ReLU outputs are unit-normalised over
channels, their squared differences weighted per channel by 1x1 convs ("lin" heads), averaged over space and
summed over layers.

One deliberate difference: the channel norm uses `torch.linalg.vector_norm`, whose gradient is 0 (not NaN, as
with the package's `sqrt(sum(f**2))`) where a feature vector is all zero. Forward values are unchanged.
"""

from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from amg.core.errors import AmgError

INSTALL_HINT = "pip install --no-deps stlpips-pytorch==0.0.2"
_WEIGHTS_IN_PACKAGE = Path("weights") / "vST0.0" / "alex_shift_tolerant.pth"
_CHANNELS = (64, 192, 384, 256, 256)
_EPS = 1e-10

# The package's state-dict names -> ours: its `net.sliceN.i` layers keep their indices in `slices.N-1.i`.
_RENAMES = (
    (re.compile(r"^scaling_layer\.(shift|scale)$"), r"\1"),
    (re.compile(r"^net\.slice(\d)\.(.+)$"), lambda m: f"slices.{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^lin(\d)\.model\.1\.weight$"), r"lins.\1.weight"),
)


def perceptual_weights_path() -> Path | None:
    """The alex_shift_tolerant weights file of the installed stlpips-pytorch wheel, or None if it is not installed."""
    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _WEIGHTS_IN_PACKAGE
        if path.is_file():
            return path
    return None


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad by 2, then a depthwise 3x3 binomial ([1, 2, 1]²/16) filter."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _slice(layers: dict[int, nn.Module]) -> nn.Sequential:
    """A trunk slice whose layer names are the package's indices, so the state dict maps one to one."""
    return nn.Sequential(OrderedDict((str(index), layer) for index, layer in layers.items()))


def _trunk() -> nn.ModuleList:
    """The shift-tolerant AlexNet, cut after each of its five feature ReLUs."""
    return nn.ModuleList(
        [
            _slice({0: nn.Conv2d(3, 64, 11, padding=2), 1: BlurPool(64), 2: nn.ReLU()}),
            _slice({3: nn.MaxPool2d(3, stride=1), 4: BlurPool(64), 5: nn.Conv2d(64, 192, 5, padding=2), 6: nn.ReLU()}),
            _slice(
                {7: nn.MaxPool2d(3, stride=1), 8: BlurPool(192), 9: nn.Conv2d(192, 384, 3, padding=1), 10: nn.ReLU()}
            ),
            _slice({11: nn.Conv2d(384, 256, 3, padding=1), 12: nn.ReLU()}),
            _slice({13: nn.Conv2d(256, 256, 3, padding=1), 14: nn.ReLU()}),
        ]
    )


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    raise AmgError(f"unexpected entry {key!r} in the ST-LPIPS weights file: not the alex_shift_tolerant weights?")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {_rename(key): value for key, value in state.items()}


def _unit_normalise(features: torch.Tensor) -> torch.Tensor:
    return features / (torch.linalg.vector_norm(features, dim=1, keepdim=True) + _EPS)


class ShiftTolerantLPIPS(nn.Module):
    """Frozen ST-LPIPS (AlexNet) distance between image batches in [-1, 1]; differentiable w.r.t. its inputs.

    It has no dropout or batch norm, so train() / eval() do not change its output.
    """

    def __init__(self, weights: Path | None = None):
        super().__init__()
        weights = weights or perceptual_weights_path()
        if weights is None or not Path(weights).is_file():
            where = f"at {weights}" if weights else "(package stlpips-pytorch is not installed)"
            raise AmgError(f"shift-tolerant LPIPS weights not found {where}; install them with: {INSTALL_HINT}")
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        self.slices = _trunk()
        self.lins = nn.ModuleList(nn.Conv2d(channels, 1, 1, bias=False) for channels in _CHANNELS)
        self.load_state_dict(_load_state(Path(weights)))
        self.requires_grad_(False)
        self.eval()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised ReLU feature maps of images in [-1, 1]."""
        h = (images - self.shift) / self.scale
        outputs = []
        for block in self.slices:
            h = block(h)
            outputs.append(_unit_normalise(h))
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) distances between x and y, both (B, 3, H, W) in [-1, 1] with H, W >= 24."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
            raise ValueError(f"expected two (B, 3, H, W) batches of the same shape, got {shapes}")
        layers = zip(self.features(x), self.features(y), self.lins)
        return sum(lin((fx - fy) ** 2).mean(dim=(1, 2, 3)) for fx, fy, lin in layers)
