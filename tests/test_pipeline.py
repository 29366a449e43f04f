"""`amg run` end to end at tiny settings: a shared clip as the avatar, driven by another speaker's speech."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import av
import cv2
import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.config import AvatarConfig, MotionOptions, load_config, preset_overrides
from amg.layout import Layout
from amg.media import iter_frames, load_audio, probe_video, write_wav
from amg.motion.tracks import MotionTracks
from amg.pipeline import run
from amg.tracking.boxes import mouth_boxes
from amg.tracking.tracks import Tracks
from amg.training import load_checkpoint

from conftest import require_shared

pytestmark = pytest.mark.slow  # real stages on real footage, seconds each: `pytest -m 'not slow'` skips them

# The fast preset, shrunk further: 64 px, a few dozen steps (the test checks plumbing, not beauty).
TINY = {
    "gan.size": 64,
    "gan.n_levels": 4,
    "gan.steps": 30,
    "gan.eval_every": 30,
    "gan.eval_frames": 4,
    "gan.bank_size": 60,
    "motion.expression.steps": 300,
    "motion.pose.steps": 200,
    "enhance.steps": 10,
    "enhance.eval_every": 10,
    "enhance.max_frames": 60,
}
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


def test_run_with_upscale_writes_the_refined_video_beside_the_plain_one(first_run):
    layout, name, _, _, duration = first_run
    args = ["run", str(layout.root), "male_gap", name, "--preset", "fast", "--pose", "static", "--upscale", "2"]
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
    args = ["run", str(layout.root), "long_speech", name, "--preset", "fast", "--pose", "static"]
    command = [sys.executable, "-m", "amg", *args, *(f"--set={k}={v}" for k, v in TINY.items())]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "Rendering:" not in seen and process.poll() is None:
        seen += process.stderr.read(1)
    time.sleep(1.0)
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
    cross = report["cross_driven"]["male_gap"]["sources"]
    assert set(cross) == {"driving", "generated", "enhanced", "copy", "warp"} and "psnr" not in cross["generated"]
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


def test_a_live_stream_draws_the_frames_of_the_offline_render(first_run, tmp_path):
    """amg.live: the speech fed in 80-ms chunks gives as many frames as the file, each the sound's 40 ms, close
    to the offline frames (the same code; what differs is the look-ahead and the features near the newest
    frame); `amg live --input FILE --output FILE.mp4` records them with the sound, as long as the speech."""
    from amg.audio.features import features_and_stats
    from amg.config import LiveConfig, MotionConfig, read_saved_config
    from amg.gan.inference import AvatarGenerator
    from amg.live import LiveSession, chunks_in_real_time, run_live
    from amg.motion.stage import predict_motion

    layout, name, _, _, duration = first_run
    options = MotionOptions(pose="static")
    speech = load_audio(layout.audio_source("male_gap"))
    generator = AvatarGenerator(layout, name)
    offline = np.stack(list(generator.frames(predict_motion(layout, "male_gap", name, options))))
    features_cfg = read_saved_config(MotionConfig, layout.motion_config(name)).features
    stats = features_and_stats(speech, features_cfg)[1]
    for lookahead in (16, 8):
        frames = []
        session = LiveSession(layout, name, frames.append, options, LiveConfig(lookahead=lookahead), generator, stats)
        run_live(session, chunks_in_real_time(speech, 80, real_time=False))
        assert [f.index for f in frames] == list(range(len(offline))) and session.dropped == 0
        np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[: len(speech)], speech)
        mse = ((np.stack([f.image for f in frames]).astype(float) - offline) ** 2).mean(axis=(1, 2, 3))
        psnr = 10 * np.log10(255**2 / np.maximum(mse, 1e-10))
        assert np.median(psnr) > 40 and psnr.min() > 25, (lookahead, np.median(psnr), psnr.min())
    out = tmp_path / "live.mp4"
    source = layout.audio_source("male_gap")
    assert (
        amg_main(["live", str(layout.root), name, "--input", str(source), "--output", str(out), "--pose", "static"])
        == 0
    )
    info = probe_video(out)
    assert abs(info.duration - duration) <= 2 / 25 and info.width == offline.shape[2]


def test_the_live_websocket_streams_frames_with_their_sound_one_stream_per_worker(first_run):
    from fastapi.testclient import TestClient

    from amg.service.app import ServiceSettings, create_app

    layout, name, _, _, duration = first_run
    speech = load_audio(layout.audio_source("male_gap"))
    pcm = (speech * 32767).astype("<i2").tobytes()
    app = create_app(layout.root, ServiceSettings(workers=1, token="s3cret"), start_worker=False)
    with TestClient(app) as client:
        with client.websocket_connect(f"/api/live?avatar={name}") as refused:
            assert refused.receive_json() == {
                "type": "error",
                "error": "This service needs its API token (?token=TOKEN).",
            }
        with client.websocket_connect(f"/api/live?avatar={name}&token=s3cret") as ws:
            assert ws.receive_json() == {"type": "ready", "size": 64, "fps": 25, "sample_rate": 16000}
            with client.websocket_connect(f"/api/live?avatar={name}&token=s3cret") as second:
                assert "in use" in second.receive_json()["error"]
            for i in range(0, len(pcm), 2560):  # 80 ms
                ws.send_bytes(pcm[i : i + 2560])
            ws.send_text("end")
            frames, sound = [], []
            while (message := ws.receive())["type"] == "websocket.send" and message.get("bytes"):
                data = message["bytes"]
                size = int.from_bytes(data[:4], "little")
                head = json.loads(data[4 : 4 + size])
                jpeg = np.frombuffer(data[4 + size : 4 + size + head["jpeg"]], np.uint8)
                frames.append((head, cv2.imdecode(jpeg, cv2.IMREAD_COLOR)))
                sound.append(np.frombuffer(data[4 + size + head["jpeg"] :], "<i2"))
            assert json.loads(message["text"]) == {"type": "end", "frames": len(frames), "dropped": 0}
    assert [h["index"] for h, _ in frames] == list(range(round(duration * 25)))
    assert all(image.shape == (64, 64, 3) for _, image in frames)
    assert all(0 < h["latency_s"] < 30 for h, _ in frames)
    np.testing.assert_allclose(np.concatenate(sound)[: len(speech)] / 32767, speech, atol=2e-4)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_pages_live_mode_streams_the_microphone_and_shows_frames_and_latency(first_run, tmp_path):
    """Chromium with a WAV as its (fake) microphone: the page's Live mode sends it, draws the frames that come
    back and reads out the latency."""
    from playwright.sync_api import sync_playwright

    from amg.service.app import ServiceSettings, create_app, running_server

    layout, name, _, _, _ = first_run
    microphone = tmp_path / "mic.wav"
    write_wav(microphone, load_audio(layout.audio_source("male_gap")), 16000)
    app = create_app(layout.root, ServiceSettings(), start_worker=False)
    with running_server(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function(f"[...document.querySelector('#avatar').options].some(o => o.value === '{name}')")
        page.select_option("#avatar", name)
        page.click("#live")
        page.wait_for_function("Number(document.querySelector('#live-view').dataset.frames || 0) >= 50", timeout=90_000)
        status = page.inner_text("#live-status")
        latency = float(page.eval_on_selector("#live-view", "c => c.dataset.latency"))
        size = page.eval_on_selector("#live-view", "c => [c.width, c.height]")
        page.click("#live")  # stop
        browser.close()
    assert size == [64, 64] and "latency" in status and "frames" in status
    assert 0 < latency < 10


def test_a_live_stream_that_falls_behind_drops_frames_but_keeps_every_index_in_step(first_run):
    from amg.config import LiveConfig
    from amg.live import LiveSession, chunks_in_real_time, run_live

    layout, name, _, _, duration = first_run
    speech = load_audio(layout.audio_source("male_gap"))
    frames = []
    session = LiveSession(layout, name, frames.append, MotionOptions(pose="static"), LiveConfig(max_latency_s=0.005))
    run_live(session, chunks_in_real_time(speech, 80, real_time=False))  # each chunk "spoken" as it is pushed
    assert [f.index for f in frames] == list(range(round(duration * 25)))
    dropped = [i for i, f in enumerate(frames) if f.dropped]
    assert 0 < len(dropped) == session.dropped < len(frames)
    assert all(np.array_equal(frames[i].image, frames[i - 1].image) for i in dropped if i > 0)  # the image before
