"""`amg run` end to end at tiny settings: a shared clip as the avatar, driven by another speaker's speech."""

from __future__ import annotations

import av
import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.config import AvatarConfig, load_config, preset_overrides
from amg.gan.losses import mouth_boxes
from amg.layout import Layout
from amg.media import iter_frames, load_audio, probe_video, write_wav
from amg.motion.stage import MotionTracks
from amg.pipeline import MotionOptions, run

from conftest import require_shared

# The fast preset, shrunk further: 64 px, a few dozen steps (the test checks plumbing, not beauty).
TINY = {"gan.size": 64, "gan.n_levels": 4, "gan.steps": 30, "gan.eval_every": 30, "gan.eval_frames": 4,
        "gan.bank_size": 60, "motion.expression.steps": 300, "motion.pose.steps": 200}  # fmt: skip
SILENCE = slice(5, 45)  # frames inside the leading 2 s of silence
SPEECH = slice(60, 140)


def _speech_after_silence(layout: Layout, name: str, source) -> float:
    """2 s of silence, then 4 s of another speaker; returns the duration in seconds."""
    speech = load_audio(source)[: 16000 * 4]
    samples = np.concatenate([np.zeros(32000, np.float32), speech])
    folder = layout.audio_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / f"{name}.wav", samples, 16000)
    return len(samples) / 16000


@pytest.fixture(scope="module")
def first_run(obama_avatar):
    layout, name = obama_avatar
    duration = _speech_after_silence(layout, "male_gap", require_shared("audio/librispeech_1320_male.mp3"))
    cfg = load_config(AvatarConfig, None, preset_overrides("fast"), **TINY)
    path, trained = run(layout, "male_gap", name, cfg, MotionOptions(pose="static"))
    return layout, name, path, trained, duration


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
    # The head is held still (--pose static): what changes in the mouth box is the mouth.
    assert mouth[SPEECH].std(axis=0).mean() > 2 * mouth[SILENCE].std(axis=0).mean()


def test_second_run_with_another_voice_trains_nothing(first_run, shared_media, capsys):
    layout, name, _, _, _ = first_run
    checkpoint = layout.gan_checkpoint(name)
    before = checkpoint.stat().st_mtime_ns
    _speech_after_silence(layout, "female_gap2", shared_media("audio/librispeech_3575_female.mp3"))
    args = ["run", str(layout.root), "female_gap2", name, "--preset", "fast", "--full-frame"]
    args += [f"--set={k}={v}" for k, v in TINY.items()]
    assert amg_main(args) == 0
    assert "Trained: nothing" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == before
    video = layout.generated_video("female_gap2", name)
    source = probe_video(layout.video_source(name))
    assert (probe_video(video).width, probe_video(video).height) == (source.width, source.height)


def test_run_reports_a_missing_audio_before_training(tmp_path):
    assert amg_main(["run", str(tmp_path), "nosuchaudio", "nosuchvideo"]) == 2
