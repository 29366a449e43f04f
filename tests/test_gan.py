"""Stage 5: the image GAN's networks, inputs, losses, metrics and its training loop (tiny settings, real clip)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amg.conditioning import N_CHANNELS
from amg.config import AvatarConfig, GanConfig
from amg.core.checkpoints import TrainingRun, load_checkpoint
from amg.core.images import psnr, ssim
from amg.core.tensors import to_tensor
from amg.gan import losses
from amg.gan.candidates import CandidatePicker, descriptors, head_pose_features
from amg.gan.inputs import CANDIDATE_CHANNELS, GeneratorInputs
from amg.gan.networks import (
    Generator,
    MultiScaleDiscriminator,
    TemporalDiscriminator,
    count_flops,
    finest_band,
)
from amg.gan.references import choose_bank_frames
from amg.gan.train import trains_mouth_discriminator
from amg.media.output import FullFramePaster
from amg.tracking import topology
from amg.tracking.boxes import mouth_boxes
from amg.tracking.tracks import Tracks

HOLDOUT = AvatarConfig().holdout  # every stage holds out the same tail

K = 3
DYNAMIC = K * CANDIDATE_CHANNELS + 3 * N_CHANNELS


def _generator(cfg: GanConfig) -> Generator:
    return Generator(K, DYNAMIC, 3, cfg.ngf, cfg.max_channels, cfg.n_levels, cfg.detail_sharpness)


def _inputs(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random dynamic inputs whose candidate mattes are 1 (all person), and a background plate."""
    g = torch.Generator().manual_seed(seed)
    dynamic = torch.rand(3, DYNAMIC, size, size, generator=g) * 2 - 1
    mattes = torch.arange(K) * CANDIDATE_CHANNELS + CANDIDATE_CHANNELS - 1
    dynamic[:, mattes] = 1.0
    return dynamic, torch.rand(1, 3, size, size, generator=g) * 2 - 1


def test_generator_at_initialisation_renders_its_first_warped_candidate():
    """Training starts at the warp baseline: an untrained generator outputs (about) candidate 0, whatever its
    other inputs, and composites it with candidate 0's matte over the plate."""
    torch.manual_seed(0)
    g = _generator(GanConfig(size=64, n_levels=4))
    dynamic, background = _inputs(64)
    frame, matte = g(dynamic, g.encode_static(background), background)
    assert frame.shape == (3, 3, 64, 64) and matte.shape == (3, 1, 64, 64)
    first = dynamic[:, :3]
    # Weight 0.96 on candidate 0 (FIRST_CANDIDATE_BIAS), the rest split over two uniform-noise candidates.
    assert (frame - first).abs().mean() < 0.03 and matte.min() > 0.99
    # Where the candidates' mattes are 0, the frame is exactly the background plate.
    dynamic[:, torch.arange(K) * CANDIDATE_CHANNELS + CANDIDATE_CHANNELS - 1] = -1.0
    frame, matte = g(dynamic, g.encode_static(background), background)
    assert matte.max() < 2e-3
    torch.testing.assert_close(frame, background.expand(3, -1, -1, -1), atol=5e-3, rtol=0)


def test_generator_output_stays_in_range_and_caches_the_static_branch():
    torch.manual_seed(0)
    g = _generator(GanConfig(size=64, n_levels=4))
    for p in g.heads.parameters():  # as after training: the heads are no longer zero
        torch.nn.init.normal_(p, std=0.5)
    dynamic, background = _inputs(64)
    frame, matte = g(dynamic, g.encode_static(background), background)
    assert frame.abs().max() <= 1 and 0 <= matte.min() and matte.max() <= 1
    again, _ = g(dynamic, g.encode_static(background.expand(3, -1, -1, -1)), background)
    torch.testing.assert_close(frame, again)


def nyquist_fraction(image: np.ndarray) -> float:
    """Share of an image's (C, N, N) AC power in the Nyquist row and column of its spectrum: where a 2-pixel
    checkerboard puts its energy (a transposed conv over smooth features: about 0.37; bilinear: 3e-4)."""
    n = image.shape[-1]
    power = np.abs(np.fft.fft2(image - image.mean(axis=(1, 2), keepdims=True))) ** 2
    return float((power[:, n // 2, :].sum() + power[:, :, n // 2].sum()) / max(power.sum(), 1e-20))


def test_generator_draws_no_grid_on_a_flat_patch():
    """Flat candidates in, no peak at the Nyquist frequency out, with heads as after training (non-zero)."""
    torch.manual_seed(0)
    g = _generator(GanConfig(size=128, n_levels=4))
    for p in g.heads.parameters():
        torch.nn.init.normal_(p, std=0.2)
    dynamic = torch.full((1, DYNAMIC, 128, 128), 0.2)
    plate = torch.full((1, 3, 128, 128), 0.2)
    with torch.no_grad():
        frame, _ = g(dynamic, g.encode_static(plate), plate)
    patch = frame[0, :, 32:96, 32:96].numpy()  # away from the zero padding's border effects
    assert nyquist_fraction(patch) < 0.01


def test_fine_texture_comes_from_the_dominant_candidate():
    """Blend weights 0.62 / 0.38 over two candidates of independent fine texture: the plain blend (detail
    sharpness 1) keeps about half of the texture's energy; a sharp detail blend keeps nearly all of it, from
    the dominant candidate, while the coarse picture stays the plain blend's."""
    torch.manual_seed(0)
    frames = {}
    for sharpness in (1.0, 32.0):
        g = Generator(2, 2 * CANDIDATE_CHANNELS, 3, 8, 32, 4, sharpness)
        with torch.no_grad():
            g.heads[1].bias[:2] = torch.tensor([0.5, 0.0])
        dynamic = torch.rand(1, 2 * CANDIDATE_CHANNELS, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
        dynamic[:, [CANDIDATE_CHANNELS - 1, 2 * CANDIDATE_CHANNELS - 1]] = 1.0  # all person
        background = torch.zeros(1, 3, 64, 64)
        with torch.no_grad():
            frames[sharpness], _ = g(dynamic, g.encode_static(background), background)
    first = dynamic[:, :3]
    band = {k: finest_band(v.clamp(-0.9, 0.9)) for k, v in frames.items()}
    energy = {k: float(v.pow(2).mean()) for k, v in band.items()}
    assert energy[32.0] > 1.5 * energy[1.0]
    assert torch.corrcoef(torch.stack([band[32.0].flatten(), finest_band(first).flatten()]))[0, 1] > 0.9
    coarse = {k: torch.nn.functional.avg_pool2d(v, 4) for k, v in frames.items()}
    assert (coarse[32.0] - coarse[1.0]).abs().mean() < 0.02


def test_onnx_runtime_engine_computes_what_pytorch_computes():
    from amg.core.onnx_runtime import OnnxModel

    torch.manual_seed(0)
    g = _generator(GanConfig(size=64, n_levels=4)).eval()  # with the detail blend (its pooling, upsampling)
    for p in g.heads.parameters():
        torch.nn.init.normal_(p, std=0.5)
    dynamic, background = _inputs(64)
    with torch.no_grad():
        code = g.encode_static(background)
        expected, _ = g(dynamic, code, background)
        onnx = OnnxModel.exported(g, dynamic[:1], {"static_code": code, "background": background})
    torch.testing.assert_close(onnx(dynamic), expected, atol=1e-4, rtol=0)  # any batch size, not just the example's


def test_default_generator_fits_the_realtime_budget():
    """≤ 1.9 GFLOP per 256² frame: with the warp, what lets 2 CPU cores render 25 frames/s (benchmarks/render.py)."""
    cfg = GanConfig()
    g = _generator(cfg)
    flops = count_flops(g, torch.zeros(1, DYNAMIC, 256, 256), torch.zeros(1, 16, 128, 128), torch.zeros(1, 3, 256, 256))
    assert 0.8e9 < flops < 1.9e9


def test_discriminators_give_patch_logits_and_features():
    d = MultiScaleDiscriminator(7, 8, 2)
    out = d(torch.randn(2, 7, 64, 64))
    assert len(out) == 2 and out[0][-1].shape[:2] == (2, 1) and out[1][-1].shape[-1] < out[0][-1].shape[-1]
    t = TemporalDiscriminator(7, 8)
    logits = t(torch.randn(6, 7, 64, 64), 3)[-1]
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


def test_the_mouth_discriminator_sees_the_conditioning_and_the_pictures_fine_detail():
    rng = torch.Generator().manual_seed(0)
    conditioning = torch.rand(2, 4, 64, 64, generator=rng)
    sharp = torch.rand(2, 3, 64, 64, generator=rng) * 2 - 1
    soft = F.avg_pool2d(sharp, 5, stride=1, padding=2, count_include_pad=False)
    flat = torch.full_like(sharp, 0.3)
    boxes = np.array([[8, 16, 40, 40], [0, 0, 64, 64]])

    def crops(picture):
        return losses.mouth_detail_crops(torch.cat([conditioning, picture], 1), boxes, 32, 4)

    out = crops(sharp)
    assert out.shape == (2, 7, 32, 32)
    torch.testing.assert_close(out[:, :4], losses.crop_resized(conditioning, boxes, 32))
    assert crops(flat)[:, 4:].abs().max() < 1e-5  # no detail in a flat picture
    assert crops(soft)[:, 4:].pow(2).mean() < 0.2 * out[:, 4:].pow(2).mean()


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


def test_a_pasted_crop_keeps_its_fine_texture():
    """A 512-px crop of fine texture pasted into a 557-px window (obama_halfbody_34s's) keeps most of its
    Laplacian energy: bilinear growth kept 0.42x of it, bicubic 0.67x."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (512, 512, 3)).astype(np.float32), (0, 0), 0.8)
    crop = np.clip((texture - texture.mean()) * 3 + 128, 0, 255).astype(np.uint8)
    frame = FullFramePaster(np.zeros((720, 1280, 3), np.uint8), np.array([325, 66, 557]), feather=0.0)(crop)

    def energy(image):
        return cv2.Laplacian(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    assert energy(frame[66 + 20 : 66 + 537, 325 + 20 : 325 + 537]) > 0.6 * energy(crop)


def test_the_mouth_discriminator_trains_for_generators_up_to_256_px():
    # At 512 px it cost cnn_anchor_71s 0.36 dB of the face box, teeth and mouth opening (benchmarks/RESULTS.md).
    assert trains_mouth_discriminator(GanConfig(size=256)) and trains_mouth_discriminator(GanConfig(size=128))
    assert not trains_mouth_discriminator(GanConfig(size=512))
    assert trains_mouth_discriminator(GanConfig(size=512, mouth_gan_max_size=512))
    assert not trains_mouth_discriminator(GanConfig(size=256, mouth_gan_weight=0.0))


def test_mouth_boxes_hold_the_lips(obama_avatar):
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    boxes = mouth_boxes(tracks.landmarks[:50], tracks.size, 128)
    lips = tracks.landmarks[:50, topology.LIPS, :2] * 128 / tracks.size
    assert (lips[..., 0] >= boxes[:, None, 0]).all() and (lips[..., 0] <= boxes[:, None, 2]).all()
    assert (lips[..., 1] >= boxes[:, None, 1]).all() and (lips[..., 1] <= boxes[:, None, 3]).all()
    side = boxes[:, 2] - boxes[:, 0]
    assert (side < 128 * 0.6).all() and (side > 10).all()


def test_candidates_come_from_training_frames_and_match_mouth_and_eyes(obama_avatar):
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    train = slice(0, int(round(tracks.n_frames * 0.85)))
    bank = choose_bank_frames(tracks, train, 200)  # thinned out: 640 training frames into 200
    assert len(bank) <= 200 and (bank < train.stop).all()
    # The extremes are kept: the widest-open mouth and the most closed eyes of the training part.
    opening = topology.mouth_opening(tracks.landmarks[train])
    assert int(np.argmax(opening)) in bank and int(np.argmin(topology.eye_opening(tracks.landmarks[train]))) in bank

    poses = head_pose_features(tracks.rotation, tracks.translation, tracks.scale)
    picker = CandidatePicker(tracks.landmarks[bank], poses[bank], bank, 3, hysteresis=4.0)
    held_out = np.arange(train.stop, tracks.n_frames)
    picks = picker.pick(tracks.landmarks[held_out], poses[held_out])
    assert picks.shape == (len(held_out), 3) and (bank[picks] < train.stop).all()
    # The mouth slot matches the target's mouth opening better than the pose slot, the eye slot its eyes; the
    # pose slot matches the head pose better than the other two.
    target_mouth = topology.mouth_opening(tracks.landmarks[held_out])
    mouth_of = lambda slot: topology.mouth_opening(tracks.landmarks[bank[picks[:, slot]]])  # noqa: E731
    eyes_of = lambda slot: topology.eye_opening(tracks.landmarks[bank[picks[:, slot]]])  # noqa: E731
    target_eyes = topology.eye_opening(tracks.landmarks[held_out])
    assert np.abs(mouth_of(1) - target_mouth).mean() < np.abs(mouth_of(0) - target_mouth).mean()
    assert np.abs(eyes_of(2) - target_eyes).mean() < np.abs(eyes_of(0) - target_eyes).mean()
    pose_error = lambda slot: np.abs(poses[bank[picks[:, slot]]] - poses[held_out]).mean()  # noqa: E731
    assert pose_error(0) < pose_error(1) and pose_error(0) < pose_error(2)

    # Hysteresis: far fewer texture switches than picking the best frame anew every frame.
    jumpy = CandidatePicker(tracks.landmarks[bank], poses[bank], bank, 3, hysteresis=0.0)
    jumpy = jumpy.pick(tracks.landmarks[held_out], poses[held_out])
    switches = lambda p: int((np.diff(p, axis=0) != 0).sum())  # noqa: E731
    assert switches(picks) < 0.5 * switches(jumpy)
    # A fourth candidate is a second pose candidate from another moment (1 s or more from the first).
    four = CandidatePicker(tracks.landmarks[bank], poses[bank], bank, 4, hysteresis=1.0)
    four = four.pick(tracks.landmarks[held_out], poses[held_out])
    assert (np.abs(bank[four[:, 3]] - bank[four[:, 0]]) >= 25).all()
    second_error = np.abs(poses[bank[four[:, 3]]] - poses[held_out]).mean()
    assert second_error < pose_error(1) and second_error < pose_error(2)
    # Training never sees candidates within the exclusion window of the frame itself.
    index = np.arange(100, 130)
    trained = picker.pick(tracks.landmarks[index], poses[index], index, exclusion=25)
    assert (np.abs(bank[trained] - index[:, None]) >= 25).all()


def test_the_mouth_slot_follows_a_speaking_mouth_sooner_than_the_others(obama_avatar):
    """The mouth slot's own hysteresis (GanConfig.mouth_hysteresis): a speaking mouth changes shape every few
    frames, and a mouth candidate held as long as the pose one lags the target's lips (and teeth)."""
    layout, name = obama_avatar
    tracks = Tracks.load(layout.tracks(name))
    train = slice(0, int(round(tracks.n_frames * 0.85)))
    bank = choose_bank_frames(tracks, train, 200)
    poses = head_pose_features(tracks.rotation, tracks.translation, tracks.scale)
    held_out = np.arange(train.stop, tracks.n_frames)
    cfg = GanConfig()
    assert cfg.mouth_hysteresis < cfg.candidate_hysteresis
    picks = {
        mouth: CandidatePicker(tracks.landmarks[bank], poses[bank], bank, 4, cfg.candidate_hysteresis, mouth).pick(
            tracks.landmarks[held_out], poses[held_out]
        )
        for mouth in (cfg.candidate_hysteresis, cfg.mouth_hysteresis)
    }
    as_before, sooner = picks[cfg.candidate_hysteresis], picks[cfg.mouth_hysteresis]
    # The other slots choose as before; the mouth slot switches more often and matches the lips better.
    np.testing.assert_array_equal(np.delete(sooner, 1, axis=1), np.delete(as_before, 1, axis=1))
    switches = lambda p: int((np.diff(p[:, 1]) != 0).sum())  # noqa: E731
    assert switches(sooner) > 1.5 * switches(as_before)
    lips = descriptors(tracks.landmarks, poses)["mouth"]  # the lips' shape, as the slot compares it
    shape_error = lambda p: np.linalg.norm(lips[bank[p[:, 1]]] - lips[held_out], axis=1).mean()  # noqa: E731
    target = topology.mouth_opening(tracks.landmarks[held_out])
    opening_error = lambda p: np.abs(topology.mouth_opening(tracks.landmarks[bank[p[:, 1]]]) - target).mean()  # noqa: E731
    assert shape_error(sooner) < 0.9 * shape_error(as_before)
    assert opening_error(sooner) < opening_error(as_before)


TINY = GanConfig(
    size=64,
    n_levels=4,
    ngf=8,
    ndf=8,
    steps=6,
    save_every=3,
    eval_every=3,
    eval_frames=4,
    batch_clips=1,
    bank_size=80,
    perceptual_weight=0.0,
)


def _train(layout, name, cfg, max_minutes=None, precision="fp32"):
    from amg.gan.train import train_gan

    return train_gan(layout, name, cfg, TrainingRun(HOLDOUT, precision), max_minutes)


@pytest.mark.slow
def test_gan_training_in_bf16_matches_fp32s_level_and_resumes_in_another_precision(obama_avatar, tmp_path):
    """bf16 (autocast, channels-last, fp32 master weights; emulated where the CPU has no bf16 engine) trains to
    held-out scores near fp32's from the same seed; a run stopped in bf16 continues in fp32, which the run
    record says."""
    import shutil

    from amg.core.layout import Layout

    layout, name = obama_avatar
    roots = []
    for label in ("fp32", "bf16", "switch"):
        root = Layout(tmp_path / label)
        shutil.copytree(layout.video_dir(name), root.video_dir(name), symlinks=True)
        roots.append(root)
    fp32 = _train(roots[0], name, TINY)["metrics"]
    report = _train(roots[1], name, TINY, precision="bf16")
    assert (
        report["precision"] == "bf16" and load_checkpoint(roots[1].gan_checkpoint(name))["run"]["precision"] == "bf16"
    )
    bf16 = report["metrics"]
    assert all(np.isfinite(v) for v in bf16.values())
    assert abs(bf16["psnr"] - fp32["psnr"]) < 1.0 and abs(bf16["ssim"] - fp32["ssim"]) < 0.02
    assert bf16["copy_psnr"] == fp32["copy_psnr"]  # the baselines do not depend on the precision
    _train(roots[2], name, TINY, max_minutes=1e-9, precision="bf16")
    assert load_checkpoint(roots[2].gan_checkpoint(name))["step"] == 1
    _train(roots[2], name, TINY, precision="fp32")
    state = load_checkpoint(roots[2].gan_checkpoint(name))
    assert state["finished"] and state["step"] == 6 and state["run"] == {"holdout": HOLDOUT, "precision": "fp32"}


@pytest.mark.slow
def test_gan_training_is_deterministic_resumable_and_saves_everything(obama_avatar, tmp_path):
    import shutil

    from amg.core.layout import Layout

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
    assert any(key.startswith("mouth.") for key in a["model"])  # the mouth discriminator is trained and saved
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)
    m = report["metrics"]
    assert 0 < m["psnr"] < 60 and -1 <= m["ssim"] <= 1
    # Both baselines are reported; the warp of the nearest frame beats copying it (it moves the face into place),
    # and even 6 steps of training start at the warp's level, not at grey.
    assert m["warp_psnr"] > m["copy_psnr"] + 0.5 and m["warp_ssim"] > m["copy_ssim"]
    assert m["psnr"] > m["copy_psnr"]
    first = copies[0]
    assert first.gan_config(name).is_file() and first.gan_references(name).is_file()
    assert sorted(p.name for p in first.gan_samples_dir(name).glob("*.jpg")) == ["step_0000003.jpg", "step_0000006.jpg"]
    assert any((first.logs_dir(name) / "gan").rglob("events.out.tfevents*"))


def test_a_generator_size_of_0_is_the_preprocessed_crops_own():
    assert GanConfig().size == 0 and GanConfig().for_crop(512).size == 512
    assert GanConfig().for_crop(300).size == 256  # what six halvings allow
    assert GanConfig(n_levels=4).for_crop(200).size == 192
    assert GanConfig(size=128, n_levels=4).for_crop(512).size == 128  # a size that is set stays


def test_channels_last_inputs_hold_the_planar_inputs_values():
    """The channels-last dynamic inputs (planes joined by OpenCV's merge, converted to float in one pass) are the
    planar path's tensor within float32's last bit, in channels-last memory; the float conversion is x/127.5 - 1.
    In bf16 (a table per level) they are that tensor rounded as autocast would round it, and every level of uint8
    comes back. The planar path holds each candidate's RGB, conditioning and matte, then the context frames'
    conditioning, channels first, exactly as (x / 127.5 - 1) computes them in float32."""
    rng = np.random.default_rng(0)
    size, n, bank, k = 32, 3, 5, 2
    inputs = GeneratorInputs.__new__(GeneratorInputs)
    inputs.size, inputs.context, inputs.n_candidates, inputs.device = size, 1, k, torch.device("cpu")
    inputs.dtype = torch.float32

    class Refs:
        frames = rng.integers(0, 256, (bank, size, size, 3), np.uint8)
        mattes = rng.integers(0, 256, (bank, size, size), np.uint8)

    inputs.refs = Refs
    inputs.bank_conditioning = rng.integers(0, 256, (bank, size, size, N_CHANNELS), np.uint8)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1).astype(np.float32)
    maps = grid + rng.uniform(-3, 3, (n, k, size, size, 2)).astype(np.float32)
    picks = rng.integers(0, bank, (n, k))
    conditioning = rng.integers(0, 256, (n + 2, size, size, N_CHANNELS), np.uint8)
    inputs.channels_last = False
    planar = inputs.dynamic(conditioning, maps, picks)
    warped = np.concatenate(inputs.warped_planes(maps, picks), axis=-1)  # (n, k, size, size, 8)
    context = np.stack([conditioning[i : i + n] for i in range(3)], axis=1)  # (n, 3, size, size, N_CHANNELS)
    expected = np.concatenate([np.moveaxis(x, -1, 2).reshape(n, -1, size, size) for x in (warped, context)], axis=1)
    assert torch.equal(planar, torch.from_numpy(expected).float().mul(1 / 127.5).sub(1.0))
    inputs.channels_last = True
    joined = inputs.dynamic(conditioning, maps, picks)
    assert joined.shape == planar.shape == (n, inputs.dynamic_channels, size, size)
    assert joined.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(joined, planar, atol=2e-7, rtol=0)
    inputs.dtype = torch.bfloat16
    reduced = inputs.dynamic(conditioning, maps, picks)
    assert reduced.dtype == torch.bfloat16 and reduced.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(reduced, joined.bfloat16())
    levels = np.arange(256, dtype=np.uint8).reshape(1, 4, 8, 8)
    for dtype in (torch.bfloat16, torch.float16):
        back = (to_tensor(levels, channels_last=True, dtype=dtype).float() + 1) * 127.5
        assert torch.equal(back.round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(levels))
    torch.testing.assert_close(
        to_tensor(levels, channels_last=True),
        (torch.arange(256.0) / 127.5 - 1).reshape(1, 4, 8, 8).permute(0, 3, 1, 2),
        atol=2e-7,
        rtol=0,
    )
