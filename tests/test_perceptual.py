"""ST-LPIPS perceptual distance: identity, monotonicity, shift tolerance on a real frame, gradients, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amg.core.errors import AmgError
from amg.gan.perceptual import ShiftTolerantLPIPS, perceptual_weights_path
from amg.media import iter_frames

from conftest import require_shared


@pytest.fixture(scope="module")
def lpips() -> ShiftTolerantLPIPS:
    if perceptual_weights_path() is None:
        pytest.skip("ST-LPIPS weights missing: pip install --no-deps stlpips-pytorch==0.0.2")
    return ShiftTolerantLPIPS()


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """(1, 3, 128, 128) centre crop of a real talking-head frame, in [-1, 1]."""
    rgb = next(iter_frames(require_shared("video/obama_clip2.mp4")))
    h, w = rgb.shape[:2]
    crop = rgb[h // 2 - 64 : h // 2 + 64, w // 2 - 64 : w // 2 + 64]
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 127.5 - 1


def _noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + sigma * noise).clamp(-1, 1)


def test_missing_weights_raise_with_the_install_hint(tmp_path):
    with pytest.raises(AmgError, match="pip install --no-deps stlpips-pytorch"):
        ShiftTolerantLPIPS(tmp_path / "absent.pth")


def test_is_frozen_and_returns_one_distance_per_pair(lpips):
    x = torch.rand(3, 3, 64, 80) * 2 - 1
    assert lpips(x, _noisy(x, 0.1)).shape == (3,)
    assert not any(p.requires_grad for p in lpips.parameters())


def test_distance_to_itself_is_zero(lpips, frame):
    assert lpips(frame, frame).abs().max().item() <= 1e-6


def test_distance_grows_with_noise_amplitude(lpips, frame):
    d = [lpips(frame, _noisy(frame, sigma)).item() for sigma in (0.02, 0.08, 0.3)]
    assert 0 < d[0] < d[1] < d[2], d


def test_one_pixel_shift_costs_far_less_than_noise_of_equal_energy(lpips, frame):
    shifted = torch.roll(frame, 1, dims=3)
    energy = (shifted - frame).norm()
    noise = torch.randn(frame.shape, generator=torch.Generator().manual_seed(1))
    noisy = frame + noise * (energy / noise.norm())  # unclamped, so the L2 energies are exactly equal
    d_shift, d_noise = lpips(frame, shifted).item(), lpips(frame, noisy).item()
    assert d_shift < 0.1 * d_noise, (d_shift, d_noise)


def test_gradient_flows_to_the_first_input(lpips, frame):
    x = _noisy(frame, 0.1).requires_grad_(True)
    lpips(x, frame).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
