"""`amg run` end to end at tiny settings: a shared clip as the avatar, driven by another speaker's speech."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import av
import cv2
import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.core.checkpoints import load_checkpoint
from amg.media import iter_frames, probe_video
from amg.motion.tracks import MotionTracks
from amg.tracking.boxes import mouth_boxes
from amg.tracking.tracks import Tracks

from conftest import TINY, speech_after_silence

pytestmark = pytest.mark.slow  # real stages on real footage, seconds each: `pytest -m 'not slow'` skips them

SILENCE = slice(5, 45)  # frames inside the leading 2 s of silence
SPEECH = slice(60, 140)


def test_run_trains_the_missing_image_gan_and_writes_the_video(first_run):
    layout, name, path, trained, duration = first_run
    assert "gan" in trained
    assert path == layout.generated_video("male_gap", name) and path.is_file()
    info = probe_video(path)
    assert abs(info.duration - duration) <= 1 / 25 + 1e-3
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.video[0].codec_context.name == "h264"
    frames = np.stack(list(iter_frames(path)))
    assert frames.shape == (round(duration * 25), 64, 64, 3)
    assert frames.std(axis=0).max() > 5  # the picture changes over time (the head is still: the mouth)


def test_the_mouth_moves_in_speech_and_rests_in_silence(first_run):
    layout, name, path, _, _ = first_run
    frames = np.stack(list(iter_frames(path))).astype(np.float32)
    motion = MotionTracks.load(layout.motion_tracks("male_gap", name))
    x0, y0, x1, y1 = np.median(mouth_boxes(motion.landmarks, motion.size, 64), axis=0).astype(int)
    mouth = frames[:, y0:y1, x0:x1]
    # The head is held still (--pose static): what changes in the mouth box from frame to frame is the mouth. (Not
    # the spread over time: the watermark's strength follows a 1-s sine, a slow change in every pixel.)
    changes = np.abs(np.diff(mouth, axis=0))
    assert changes[SPEECH].mean() > 2 * changes[SILENCE].mean()


def test_second_run_with_another_voice_trains_nothing(first_run, shared_media, capsys):
    layout, name, _, _, _ = first_run
    checkpoint = layout.gan_checkpoint(name)
    before = checkpoint.stat().st_mtime_ns
    speech_after_silence(layout, "female_gap2", shared_media("audio/librispeech_3575_female.mp3"))
    args = ["run", str(layout.root), "female_gap2", name, "--preset", "fast"]  # the default framing: the source's
    args += [f"--set={k}={v}" for k, v in TINY.items()]
    assert amg_main(args) == 0
    assert "Trained: nothing" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == before
    video = layout.generated_video("female_gap2", name)
    source = probe_video(layout.video_source(name))
    assert (probe_video(video).width, probe_video(video).height) == (source.width, source.height)


def test_models_trained_before_the_avatar_was_preprocessed_again_are_named_in_a_warning(first_run, caplog):
    from amg.config import AvatarConfig, load_config, preset_overrides
    from amg.stages import train_stages, trained_on_older_tracks

    layout, name, _, _, _ = first_run
    assert trained_on_older_tracks(layout, name) == []
    checkpoint = layout.gan_checkpoint(name)
    saved = checkpoint.stat()
    os.utime(checkpoint, (saved.st_atime, layout.tracks(name).stat().st_mtime - 60))
    try:
        assert trained_on_older_tracks(layout, name) == ["gan"]
        cfg = load_config(AvatarConfig, None, preset_overrides("fast"), **TINY)
        with caplog.at_level(logging.WARNING):
            assert train_stages(layout, name, cfg, lambda stage: stage.required) == {}  # nothing to train
        assert "preprocessed again after its gan models" in caplog.text and "--force" in caplog.text
    finally:
        os.utime(checkpoint, ns=(saved.st_atime_ns, saved.st_mtime_ns))


def test_an_avatar_trained_by_the_previous_amg_loads_renders_and_trains_nothing(first_run, tmp_path):
    """Before the avatar-level holdout, every motion model's and the GAN's config held its own `holdout`, in the
    saved YAML files, the checkpoints' config dicts and the fitted models' meta; no run record was written."""
    import shutil

    import torch
    import yaml

    from amg.config import AvatarConfig, load_config, preset_overrides, trained_holdouts
    from amg.core.checkpoints import save_checkpoint
    from amg.core.errors import AmgError
    from amg.core.layout import Layout
    from amg.stages import avatar_renders, train_stages

    layout, name, _, _, _ = first_run
    old = Layout(tmp_path)
    (old.root / "input_data").symlink_to(layout.root / "input_data")
    shutil.copytree(layout.checkpoint_dir(name), old.checkpoint_dir(name))
    for path, sections in (
        (old.motion_config(name), ("expression", "pose", "body", "pose2face")),
        (old.gan_config(name), ("",)),
    ):
        values = yaml.safe_load(path.read_text())
        values.pop("run")
        for section in sections:
            (values[section] if section else values)["holdout"] = 0.15
        path.write_text(yaml.safe_dump(values))
    for path in (old.audio2expression(name), old.audio2headpose(name), old.gan_checkpoint(name)):
        state = load_checkpoint(path)
        state.pop("run")
        save_checkpoint(path, **state | {"config": state["config"] | {"holdout": 0.15}})
    for path in (old.head2body(name), old.pose2face(name)):
        arrays = dict(np.load(path))
        meta = json.loads(str(arrays["meta"]))
        meta["config"]["holdout"] = 0.15
        np.savez(path, **arrays | {"meta": np.array(json.dumps(meta))})

    assert avatar_renders(old, name) and trained_holdouts(old, name) == {"motion": 0.15, "gan": 0.15}
    cfg = load_config(AvatarConfig, None, preset_overrides("fast"), **TINY)
    assert train_stages(old, name, cfg, lambda stage: stage.required) == {}  # nothing to train again
    key = "generator_ema.heads.1.weight"
    assert torch.equal(
        load_checkpoint(old.gan_checkpoint(name))["model"][key],
        load_checkpoint(layout.gan_checkpoint(name))["model"][key],
    )
    with pytest.raises(AmgError, match="one option for the whole avatar"):
        load_config(AvatarConfig, None, {"gan.holdout": 0.2})


def test_run_with_upscale_writes_the_refined_video_beside_the_plain_one(first_run):
    layout, name, _, _, duration = first_run
    args = ["run", str(layout.root), "male_gap", name, "--preset", "fast", "--pose", "static", "--upscale", "2"]
    args += ["--framing", "crop"]  # the refiner's own output size (the source framing brings both to 256)
    assert amg_main(args + [f"--set={k}={v}" for k, v in TINY.items()]) == 0
    assert layout.enhance_checkpoint(name).is_file()  # --upscale implies --enhance: the refiner was trained
    plain = layout.generated_video("male_gap", name)
    superes = layout.generated_superes("male_gap", name)
    assert superes.parent == plain.parent and superes.name == "generated_superes.mp4"
    info = probe_video(superes)
    assert (info.width, info.height) == (128, 128) and abs(info.duration - duration) <= 1 / 25 + 1e-3
    with av.open(str(superes)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    # Outside the face the refined video is the plain one, upsampled; the face differs only by the refiner.
    small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in iter_frames(superes)])
    reference = np.stack(list(iter_frames(plain)))
    assert small.shape == reference.shape
    # The top rows are background; two H.264 encodes at different sizes of a noisy 30-step image differ ~4.
    assert np.abs(small.astype(int) - reference.astype(int))[:, :6].mean() < 8


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_render_stopped_by_a_signal_says_one_line_and_leaves_no_partial_file(first_run, shared_media, sig):
    layout, name, *_ = first_run
    folder = layout.audio_dir("long_speech")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "long_speech.wav").unlink(missing_ok=True)
    (folder / "long_speech.wav").symlink_to(shared_media("audio/musetalk_eng_60s.wav"))  # 1500 frames: seconds
    layout.generated_video("long_speech", name).unlink(missing_ok=True)  # the other signal's run may have made it
    args = ["run", str(layout.root), "long_speech", name, "--preset", "fast", "--pose", "static"]
    command = [sys.executable, "-m", "amg", *args, *(f"--set={k}={v}" for k, v in TINY.items())]
    # A suite started in the background (`pytest &` in a script) inherits SIGINT ignored, and so would the render,
    # which would then finish: the child gets the default disposition back, as in a terminal.
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, preexec_fn=restore_sigint)
    seen = ""
    while "Rendering:" not in seen and process.poll() is None:
        seen += process.stderr.read(1)
    time.sleep(0.3)  # into the render (frames are being written), well before its 1500 frames at 64 px are done
    process.send_signal(sig)
    err = seen + process.stderr.read()
    assert process.wait(60) == 130
    bars = ("%|", "INFO: ")  # progress bars and the info lines before rendering
    lines = [text for text in err.replace("\r", "\n").splitlines() if text.strip() and not any(b in text for b in bars)]
    assert lines == ["interrupted: finished outputs are kept; run the same command again to continue."], err
    output = layout.output_dir("long_speech", name)
    assert not any(".part" in p.name for p in output.iterdir()) and not (output / "generated_video.mp4").exists()


def test_run_reports_a_missing_audio_before_training(tmp_path):
    assert amg_main(["run", str(tmp_path), "nosuchaudio", "nosuchvideo"]) == 2


def test_eval_measures_the_held_out_tail_against_real_frames_and_the_baseline(first_run, capsys):
    layout, name, _, _, duration = first_run
    checkpoint = layout.gan_checkpoint(name)
    before = checkpoint.stat().st_mtime_ns
    # --enhance: the face refiner (trained by the --upscale test above, else here) is measured too.
    args = ["eval", str(layout.root), name, "--audio", "male_gap", "--preset", "fast", "--enhance"]
    assert amg_main(args + [f"--set={k}={v}" for k, v in TINY.items()]) == 0
    assert "PSNR, whole crop" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == before  # the avatar held out the same tail: reused, not retrained

    report = json.loads(layout.eval_report(name).read_text())
    n = Tracks.load(layout.tracks(name)).n_frames
    held_out = n - round(n * 0.15)
    assert report["frames"] == {"total": n, "held_out_start": held_out, "held_out": n - held_out}
    sources = report["self_driven"]["sources"]
    real, generated = sources["real"], sources["generated"]
    # The real footage with its own speech is the measure's sanity check: face found, in sync.
    assert real["face_found"] > 0.95 and abs(real["sync_offset"]) <= 2 and real["sync_confidence"] > 0.1
    assert 5 < generated["psnr"] < 50 and 0 < generated["ssim"] < 1 and 0 < generated["face_ssim"] < 1
    for baseline in (sources["copy"], sources["warp"]):  # real frames of the avatar, as they are and warped
        assert baseline["face_found"] > 0.95 and 0 < baseline["mouth_lmd_px"] < 30 and baseline["jitter_px"] > 0
    # The warp moves the nearest frame's face onto the driving landmarks: closer to the real frames than a copy.
    assert sources["warp"]["face_psnr"] > sources["copy"]["face_psnr"]
    assert sources["warp"]["mouth_lmd_px"] < sources["copy"]["mouth_lmd_px"]
    if generated["face_found"] == 0:  # 30 steps at 64 px may not look like a face yet: no made-up numbers then
        assert generated["mouth_lmd_px"] == "nan" and generated["sync_offset"] == "nan"
    assert 0 < sources["driving"]["mouth_lmd_px"] < 10  # the lip-sync network's landmarks against the real lips
    assert set(report["self_driven"]["comparison"]) >= {"psnr", "face_ssim", "mouth_lmd_px", "sync_confidence"}
    assert report["self_driven"]["head_motion"]["generated_rotation_velocity_deg"] > 0
    # The mouth against the person's own: ratios to the real frames' (1 = as the person), teeth, no-reference blur.
    assert {"opening_mean_ratio", "opening_spread_ratio", "teeth_ratio", "sync_offset_to_real"} <= set(generated)
    warp = sources["warp"]  # real frames warped: a face always found (the tiny generator's may not be)
    assert 0.3 < warp["opening_mean_ratio"] < 3 and 0 <= warp["teeth_frames"] <= 1 and 0 < warp["teeth_ratio"]
    assert 0 < generated["mouth_blur"] < 1 and 0 <= generated["face_lpips"] < 1 and warp["face_lpips"] > 0
    assert report["self_driven"]["comparison"]["opening_spread_ratio"]["real"] is None
    cross = report["cross_driven"]["male_gap"]["sources"]
    # Other speech has no ground truth: its "real" column is the person's held-out frames, what ratios are to, but
    # for the mouth opening, taken over every speaking frame of the person's video.
    assert (
        set(cross) == {"real", "driving", "generated", "enhanced", "copy", "warp"} and "psnr" not in cross["generated"]
    )
    assert cross["real"]["teeth_frames"] == real["teeth_frames"] and "opening_spread_ratio" in cross["generated"]
    assert n - held_out < cross["real"]["speaking_frames"] <= n
    mouth = cross["warp"]  # a face always found (the tiny generator's may not be)
    assert mouth["opening_spread_ratio"] == pytest.approx(
        mouth["mouth_opening_std_px"] / cross["real"]["mouth_opening_std_px"]
    )
    enhanced = sources["enhanced"]  # the refined frames, measured like the others against the real ones
    assert 5 < enhanced["psnr"] < 50 and 0 < enhanced["face_ssim"] < 1 and enhanced["mouth_sharpness"] > 0

    folder = layout.eval_dir(name)
    html = layout.eval_html(name).read_text()
    for file in ("held_out.mp4", "cross_male_gap.mp4", "mouth_opening.png", "pose.png", "sync.png"):
        assert (folder / file).is_file() and file in html
    side = probe_video(folder / "held_out.mp4")
    assert (side.width, side.height) == (6 * 64, 64) and abs(side.duration - (n - held_out) / 25) < 1e-3
    assert abs(probe_video(folder / "cross_male_gap.mp4").duration - duration) <= 1 / 25 + 1e-3


def test_eval_refuses_a_tail_the_avatar_was_trained_on(first_run, capsys):
    layout, name, _, _, _ = first_run
    before = layout.gan_checkpoint(name).stat().st_mtime_ns
    assert amg_main(["eval", str(layout.root), name, "--holdout", "0.3"]) == 2
    assert "trained on frames up to" in capsys.readouterr().err
    assert layout.gan_checkpoint(name).stat().st_mtime_ns == before


def test_more_gan_steps_continue_the_finished_gan_and_touch_no_other_stage(first_run, capsys):
    # Last in this module: it trains the image GAN further.
    layout, name, _, _, _ = first_run
    others = [
        layout.audio2expression(name),
        layout.audio2headpose(name),
        layout.head2body(name),
        layout.pose2face(name),
        layout.eye_model(name),
    ]
    before = [path.read_bytes() for path in others]
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    args = ["train", str(layout.root), name, "--stage", "all", "--preset", "fast", *sets, "--set=gan.steps=+6"]
    assert amg_main(args) == 0
    state = load_checkpoint(layout.gan_checkpoint(name))
    assert state["step"] == TINY["gan.steps"] + 6 and state["finished"]
    assert "Image GAN on held-out frames" in capsys.readouterr().out  # it trained (the 6 steps), the motion did not
    assert [path.read_bytes() for path in others] == before  # byte-identical
    assert amg_main(args[:-1] + ["--set=gan.steps=36"]) == 0  # the same schedule, given absolutely: nothing to do
    assert "Nothing to train" in capsys.readouterr().out
