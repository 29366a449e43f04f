"""The generator quantized to int8 (amg.gan.inference, amg.core.onnx_runtime): calibrated on the avatar's own
training frames, close to the fp32 frames, cached beside the checkpoint and made again when the checkpoint
changes or the cache is damaged."""

from __future__ import annotations

import shutil

import numpy as np
import pytest


@pytest.fixture
def avatar_copy(first_run, tmp_path):
    """first_run's avatar in a layout of its own (its checkpoints copied: tests here write into them)."""
    from amg.core.layout import Layout

    layout, name, _, _, _ = first_run
    copy = Layout(tmp_path)
    (copy.root / "input_data").symlink_to(layout.root / "input_data")
    shutil.copytree(layout.checkpoint_dir(name), copy.checkpoint_dir(name))
    return copy, name


def _frames(generator, motion) -> np.ndarray:
    return np.stack(list(generator.frames(motion, chunk=8))).astype(np.float64)


def test_the_int8_generator_renders_close_to_fp32_and_is_made_once_per_checkpoint(avatar_copy, monkeypatch, caplog):
    import amg.gan.inference as inference
    from amg.core.checkpoints import load_checkpoint, save_checkpoint
    from amg.gan.inference import AvatarGenerator
    from amg.motion.tracks import tracked_motion
    from amg.tracking.tracks import Tracks

    layout, name = avatar_copy
    made = []

    def counted(model, calibration):
        batches = list(calibration)
        made.append(sum(len(batch["input"]) for batch in batches))
        return quantize(model, batches)

    quantize = inference.quantize_int8
    monkeypatch.setattr(inference, "quantize_int8", counted)
    tracks = Tracks.load(layout.tracks(name))
    motion = tracked_motion(tracks, slice(tracks.n_frames - 16, tracks.n_frames))  # the held-out tail
    fp32 = _frames(AvatarGenerator(layout, name, engine="onnxruntime"), motion)
    int8 = _frames(AvatarGenerator(layout, name, engine="int8"), motion)
    assert made == [32] and layout.gan_int8(name).is_file()  # 4 stretches of 8 training frames
    psnr = 10 * np.log10(255**2 / np.mean((int8 - fp32) ** 2))
    assert 30 < psnr < 80  # quantized (not fp32 again), yet close to it
    assert np.abs(int8.mean() - fp32.mean()) < 1.0  # no shift of brightness

    again = _frames(AvatarGenerator(layout, name, engine="int8"), motion)
    assert made == [32] and np.array_equal(again, int8)  # read from the cache

    state = load_checkpoint(layout.gan_checkpoint(name))
    save_checkpoint(layout.gan_checkpoint(name), **state | {"step": state["step"] + 1})  # trained further
    AvatarGenerator(layout, name, engine="int8")
    assert made == [32, 32]

    layout.gan_int8(name).write_bytes(b"\x08\x01 not a model")
    with caplog.at_level("WARNING"):
        AvatarGenerator(layout, name, engine="int8")
    assert made == [32, 32, 32] and "cannot be read" in caplog.text


def test_auto_never_quantizes(avatar_copy):
    from amg.gan.inference import AvatarGenerator

    layout, name = avatar_copy
    assert AvatarGenerator(layout, name).engine in ("onnxruntime", "torch")
    assert not layout.gan_int8(name).exists()
