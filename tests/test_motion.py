"""Stage 3 on real footage: train on obama_clip2's first 85%, drive with other voices."""

from __future__ import annotations

import numpy as np
import pytest

from amg.config import Audio2ExpressionConfig, Audio2PoseConfig, MotionConfig
from amg.media import load_audio, probe_video, write_wav
from amg.motion.body import Head2Body
from amg.motion.stage import MotionTracks, predict_motion, train_motion, write_motion_preview
from amg.tracking import topology

from conftest import link_shared

# Small but real: enough steps to beat the baselines on the held-out tail, minutes not hours.
FAST = MotionConfig(
    expression=Audio2ExpressionConfig(steps=600, eval_every=300, save_every=300),
    pose=Audio2PoseConfig(steps=400, eval_every=400, save_every=200),
)


@pytest.fixture(scope="module")
def trained(obama_avatar):
    layout, name = obama_avatar
    report = train_motion(layout, name, FAST)
    return layout, name, report


def test_lip_sync_beats_the_baselines_on_the_held_out_tail(trained):
    _, _, report = trained
    model = report["audio2expression"]
    baselines = report["audio2expression_baselines"]
    assert model["lips_px"] < baselines["mean_expression"]["lips_px"]
    assert model["lips_px"] < baselines["nearest_audio"]["lips_px"]
    assert model["opening_corr"] > 0.3


def test_checkpoints_configs_plot_and_logs_are_saved(trained):
    layout, name, _ = trained
    for path in (layout.audio2expression(name), layout.audio2headpose(name), layout.head2body(name),
                 layout.head2body_plot(name), layout.motion_config(name), layout.motion_report(name)):
        assert path.is_file() and path.stat().st_size > 0, path
    assert any(layout.logs_dir(name).rglob("events.out.tfevents*"))
    body = Head2Body.load(layout.head2body(name))
    assert body.metrics["val_shoulder_px"] < 10


def test_second_training_call_trains_nothing(trained, caplog):
    layout, name, _ = trained
    before = layout.audio2expression(name).stat().st_mtime_ns
    with caplog.at_level("INFO"):
        train_motion(layout, name, FAST)
    assert "already trained" in caplog.text
    assert layout.audio2expression(name).stat().st_mtime_ns == before


def _speech_with_silence(tmp_path, layout, shared_media) -> str:
    """LibriSpeech female speech, then 2 s of digital silence, then speech again."""
    speech = load_audio(shared_media("audio/librispeech_3575_female.mp3"))[: 16000 * 4]
    folder = layout.audio_dir("female_gap")
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "female_gap.wav", np.concatenate([speech, np.zeros(32000, np.float32), speech]), 16000)
    return "female_gap"


def test_other_voice_drives_the_mouth_open_in_speech_and_closed_in_silence(trained, shared_media, tmp_path):
    layout, name, _ = trained
    audio = _speech_with_silence(tmp_path, layout, shared_media)
    motion = predict_motion(layout, audio, name, seed=1)
    assert motion.n_frames == 250  # 10 s at 25 fps
    for array in (motion.expression, motion.rotation, motion.translation, motion.body, motion.landmarks):
        assert np.isfinite(array).all()
    opening = topology.mouth_opening(motion.landmarks)
    speech, silence = np.r_[10:90, 160:240], np.r_[110:140]  # away from the transitions
    assert opening[speech].std() > 3 * opening[silence].std()  # the mouth moves while she talks...
    assert opening[silence].mean() < np.percentile(opening[speech], 40)  # ...and rests closed in the gap
    assert np.abs(np.diff(opening[silence])).max() < 0.5  # still: no mumbling in silence
    reloaded = MotionTracks.load(layout.motion_tracks(audio, name))
    np.testing.assert_array_equal(reloaded.expression, motion.expression)


def test_phone_quality_audio_and_a_preview_with_sound(trained, shared_media):
    layout, name, _ = trained
    link_shared(layout, "audio", "allison8k", "audio/asterisk_allison_demo_instruct_73s.wav")
    duration = len(load_audio(shared_media("audio/asterisk_allison_demo_instruct_73s.wav"))) / 16000
    motion = predict_motion(layout, "allison8k", name, pose_mode="static")
    assert abs(motion.n_frames - duration * 25) <= 1
    assert np.isfinite(motion.landmarks).all()
    assert np.ptp(motion.rotation, axis=0).max() == 0  # static pose holds still
    opening = topology.mouth_opening(motion.landmarks)
    assert opening[motion.vad > 0.5].mean() > opening[motion.vad < 0.1].mean()
    preview = write_motion_preview(layout, "allison8k", name, motion)
    info = probe_video(preview)
    assert info.has_audio and abs(info.n_frames() - motion.n_frames) <= 1
