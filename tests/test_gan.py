"""Stage 5: the image GAN's networks, inputs, losses, metrics and its training loop (tiny settings, real clip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amg.config import GanConfig
from amg.evaluation.metrics import psnr, ssim
from amg.gan import losses
from amg.gan.networks import Generator, MultiScaleDiscriminator, TemporalDiscriminator, count_flops
from amg.gan.references import choose_reference_frames
from amg.output import FullFramePaster
from amg.tracking import topology
from amg.tracking.tracks import Tracks
from amg.training import load_checkpoint


def _generator(cfg: GanConfig, dynamic: int = 19, static: int = 24) -> Generator:
    return Generator(dynamic, static, cfg.ngf, cfg.max_channels, cfg.n_levels)


def test_generator_blends_its_output_over_the_background_and_caches_the_static_branch():
    torch.manual_seed(0)
    g = _generator(GanConfig(size=64, n_levels=4))
    dynamic, static = torch.randn(3, 19, 64, 64), torch.randn(1, 24, 64, 64)
    background = torch.rand(1, 3, 64, 64) * 2 - 1
    frame, matte = g(dynamic, g.encode_static(static), background)
    assert frame.shape == (3, 3, 64, 64) and matte.shape == (3, 1, 64, 64)
    assert frame.abs().max() <= 1 and 0 <= matte.min() and matte.max() <= 1
    # The static code computed once equals computing it per frame (what makes the references free per frame).
    again, _ = g(dynamic, g.encode_static(static.expand(3, -1, -1, -1)), background)
    torch.testing.assert_close(frame, again)
    # Where the matte is 0 the frame is exactly the background.
    with torch.no_grad():
        g.to_frame[1].bias[3] = -1e4
    frame, matte = g(dynamic, g.encode_static(static), background)
    assert matte.max() < 1e-6
    torch.testing.assert_close(frame, background.expand(3, -1, -1, -1), atol=1e-5, rtol=0)


def test_onnx_runtime_engine_computes_what_pytorch_computes():
    from amg.onnx_runtime import OnnxModel

    torch.manual_seed(0)
    g = _generator(GanConfig(size=64, n_levels=4)).eval()
    dynamic, background = torch.randn(3, 19, 64, 64), torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        code = g.encode_static(torch.randn(1, 24, 64, 64))
        expected, _ = g(dynamic, code, background)
        onnx = OnnxModel(g, dynamic[:1], {"static_code": code, "background": background})
    torch.testing.assert_close(onnx(dynamic), expected, atol=1e-4, rtol=0)  # any batch size, not just the example's


def test_default_generator_fits_the_realtime_budget():
    """≤ 1.6 GFLOP per 256² frame: what lets 2 CPU cores render 25 frames/s (benchmarks/render.py)."""
    cfg = GanConfig()
    g = _generator(cfg)
    flops = count_flops(g, torch.zeros(1, 19, 256, 256), torch.zeros(1, 16, 128, 128), torch.zeros(1, 3, 256, 256))
    assert 0.8e9 < flops < 1.6e9


def test_discriminators_give_patch_logits_and_features():
    d = MultiScaleDiscriminator(7, 8, 2)
    out = d(torch.randn(2, 7, 64, 64))
    assert len(out) == 2 and out[0][-1].shape[:2] == (2, 1) and out[1][-1].shape[-1] < out[0][-1].shape[-1]
    t = TemporalDiscriminator(7, 8)
    logits = t(torch.randn(2, 7, 3, 64, 64))[-1]
    assert logits.shape[:3] == (2, 1, 3)


def test_losses_are_zero_for_perfect_output_and_positive_otherwise():
    x = torch.rand(2, 3, 32, 32)
    w = losses.mouth_weight_map(np.array([[4, 4, 12, 12], [0, 0, 32, 32]]), 32, 4.0)
    assert w[0, 0, 5, 5] == 5 and w[0, 0, 20, 20] == 1 and (w[1] == 5).all()
    assert losses.weighted_l1(x, x, w) == 0 and losses.weighted_l1(x, 1 - x, w) > 0
    feats = [[torch.ones(1, 2, 4, 4), torch.ones(1, 1, 2, 2)]]
    assert losses.feature_matching_loss(feats, feats) == 0
    assert losses.discriminator_loss(feats, [[f * 0 for f in feats[0]]]) == 0
    assert losses.generator_adversarial_loss(feats) == 0


def test_metrics_on_known_cases():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(a + rng.normal(0, 60, a.shape), 0, 255).astype(np.uint8)
    assert 20 < psnr(a, noisy) < 25  # σ = 20 (clipped) → about 22 dB
    assert psnr(a, noisier) < psnr(a, noisy) and ssim(a, noisier) < ssim(a, noisy) < 1
    assert psnr(a, noisy, (0, 0, 8, 8)) == pytest.approx(psnr(a[:, :8, :8], noisy[:, :8, :8]))


def test_full_frame_paste_has_no_seam():
    backdrop = np.full((120, 160, 3), 100, np.uint8)
    paste = FullFramePaster(backdrop, np.array([50, 20, 64]), feather=0.1)
    crop = np.full((32, 32, 3), 200, np.uint8)
    frame = paste(crop)
    assert frame.shape == backdrop.shape
    assert (frame[30:74, 60:104] == 200).all()  # inside the feathered border: the generated pixels
    ring = np.concatenate([frame[20, 50:114], frame[83, 50:114], frame[20:84, 50], frame[20:84, 113]])
    assert np.abs(ring.astype(int) - 100).max() <= 10  # its border fades into the backdrop
    assert (frame[:, :40] == 100).all()
    # A window reaching past the frame's edge pastes only what is inside.
    FullFramePaster(backdrop, np.array([120, -10, 64]), feather=0.1)(crop)


def test_mouth_boxes_hold_the_lips(obama_avatar):
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    boxes = losses.mouth_boxes(tracks.landmarks[:50], tracks.size, 128)
    lips = tracks.landmarks[:50, topology.LIPS, :2] * 128 / tracks.size
    assert (lips[..., 0] >= boxes[:, None, 0]).all() and (lips[..., 0] <= boxes[:, None, 2]).all()
    assert (lips[..., 1] >= boxes[:, None, 1]).all() and (lips[..., 1] <= boxes[:, None, 3]).all()
    side = boxes[:, 2] - boxes[:, 0]
    assert (side < 128 * 0.6).all() and (side > 10).all()


def test_references_span_closed_to_open_mouth(obama_avatar):
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    train = slice(0, int(tracks.n_frames * 0.85))
    refs = choose_reference_frames(tracks, train, 3)
    opening = topology.mouth_opening(tracks.landmarks[refs])
    assert len(set(refs)) == 3 and (refs < train.stop).all()
    assert opening[0] < opening[1] < opening[2]


TINY = GanConfig(size=64, n_levels=4, ngf=8, ndf=8, steps=6, save_every=3, eval_every=3, eval_frames=4,
                 batch_clips=1, bank_size=50, perceptual_weight=0.0)  # fmt: skip


def _train(layout, name, cfg, max_minutes=None):
    from amg.gan.train import train_gan

    return train_gan(layout, name, cfg, max_minutes)


def test_gan_training_is_deterministic_resumable_and_saves_everything(obama_avatar, tmp_path):
    import shutil

    from amg.layout import Layout

    layout, name = obama_avatar
    copies = []
    for i in range(2):  # two independent DATAROOTs sharing the preprocessed video
        root = Layout(tmp_path / f"run{i}")
        shutil.copytree(layout.video_dir(name), root.video_dir(name), symlinks=True)
        copies.append(root)
    report = _train(copies[0], name, TINY)
    # The second run is interrupted after 3 steps (a checkpoint saved at step 3), then resumed.
    _train(copies[1], name, TINY, max_minutes=1e-9)
    assert load_checkpoint(copies[1].gan_checkpoint(name))["step"] == 1
    _train(copies[1], name, TINY)
    a, b = (load_checkpoint(c.gan_checkpoint(name)) for c in copies)
    assert a["finished"] and b["finished"] and a["step"] == b["step"] == 6
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)
    m = report["metrics"]
    assert 0 < m["psnr"] < 60 and 0 < m["baseline_psnr"] < 60 and -1 <= m["ssim"] <= 1
    first = copies[0]
    assert first.gan_config(name).is_file() and first.gan_references(name).is_file()
    assert sorted(p.name for p in first.gan_samples_dir(name).glob("*.jpg")) == ["step_0000003.jpg", "step_0000006.jpg"]
    assert any((first.logs_dir(name) / "gan").rglob("events.out.tfevents*"))
