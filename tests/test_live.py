"""amg live: a speech stream through the offline stages, its CLI, its WebSocket and the page's Live mode."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.config import MotionOptions
from amg.media import load_audio, probe_video, write_wav

pytestmark = pytest.mark.slow  # real stages on real footage, seconds each: `pytest -m 'not slow'` skips them


def test_a_live_stream_draws_the_frames_of_the_offline_render(first_run, tmp_path):
    """amg.live: the speech fed in 80-ms chunks gives as many frames as the file, each the sound's 40 ms, close
    to the offline frames (the same code; what differs is the look-ahead and the features near the newest
    frame); `amg live --input FILE --output FILE.mp4` records them with the sound, as long as the speech."""
    from amg.audio.features import features_and_stats
    from amg.config import LiveConfig, MotionConfig, read_saved_config
    from amg.gan.inference import AvatarGenerator
    from amg.live import LiveSession, chunks_in_real_time, run_live
    from amg.motion.inference import predict_motion

    layout, name, _, _, duration = first_run
    options = MotionOptions(pose="static")
    speech = load_audio(layout.audio_source("male_gap"))
    generator = AvatarGenerator(layout, name)
    motion = predict_motion(layout, "male_gap", name, options)
    offline = np.stack(list(generator.frames(motion)))
    features_cfg = read_saved_config(MotionConfig, layout.motion_config(name)).features
    stats = features_and_stats(speech, features_cfg)[1]
    for lookahead in (16, 8):
        frames = []
        # Latency is not what this compares: a generous budget keeps a busy machine from dropping frames.
        cfg = LiveConfig(lookahead=lookahead, framing="crop", max_latency_s=600.0)
        session = LiveSession(layout, name, frames.append, options, cfg, generator, stats)
        run_live(session, chunks_in_real_time(speech, 80, real_time=False))
        assert [f.index for f in frames] == list(range(len(offline))) and session.dropped == 0
        np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[: len(speech)], speech)
        # Live frames leave the session marked (label, watermark): compare with the offline frames so marked.
        marked = np.stack([session.marker(image, i) for i, image in enumerate(offline)])
        mse = ((np.stack([f.image for f in frames]).astype(float) - marked) ** 2).mean(axis=(1, 2, 3))
        psnr = 10 * np.log10(255**2 / np.maximum(mse, 1e-10))
        assert np.median(psnr) > 40 and psnr.min() > 25, (lookahead, np.median(psnr), psnr.min())
    out = tmp_path / "live.mp4"
    source = layout.audio_source("male_gap")
    assert (
        amg_main(["live", str(layout.root), name, "--input", str(source), "--output", str(out), "--pose", "static"])
        == 0
    )
    info = probe_video(out)
    video = probe_video(layout.video_source(name))
    # The default framing, as amg run's: the avatar video's own frame (the crop enlarged, for a 256-px source).
    assert abs(info.duration - duration) <= 2 / 25 and (info.width, info.height) == (video.width, video.height)
    framed = []
    session = LiveSession(layout, name, framed.append, options, LiveConfig(), generator, stats)
    run_live(session, chunks_in_real_time(speech, 80, real_time=False))
    assert session.frame_size == (video.width, video.height) and framed[0].image.shape[:2] == (
        video.height,
        video.width,
    )
    # ... each frame as `amg run` frames the offline crops, over the same real frames.
    paste = session.framing.paster(motion.body)
    expected = np.stack([session.marker(paste(image), i) for i, image in enumerate(offline)])
    mse = ((np.stack([f.image for f in framed]).astype(float) - expected) ** 2).mean(axis=(1, 2, 3))
    assert np.median(10 * np.log10(255**2 / np.maximum(mse, 1e-10))) > 35
    # With live.native_detail, the face box at the source's resolution as `amg run` makes it (a 64-px crop of a
    # 256-px window here): nearer those frames than the plain ones are.
    detailed, detail = [], generator.native_detail(layout, name)
    session = LiveSession(layout, name, detailed.append, options, LiveConfig(native_detail=True), generator, stats)
    run_live(session, chunks_in_real_time(speech, 80, real_time=False))
    offline_detailed = generator.frames(motion, detail=detail)
    with_detail = np.stack([session.marker(paste(image), i) for i, image in enumerate(offline_detailed)])
    images = np.stack([f.image for f in detailed]).astype(float)
    assert ((images - with_detail) ** 2).mean() < 0.5 * ((images - expected) ** 2).mean()


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
        with client.websocket_connect(f"/api/live?avatar={name}&token=s3cret&framing=crop") as ws:
            # The page's frame choice, crop here (the service's render.framing by default: the page's test).
            ready = {"type": "ready", "size": 64, "width": 64, "height": 64, "fps": 25, "sample_rate": 16000}
            assert ws.receive_json() == ready
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
    video = probe_video(layout.video_source(name))  # the page's default frame: the avatar video's own
    assert size == [video.width, video.height] and "latency" in status and "frames" in status
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


def test_a_late_chunk_builds_only_its_last_frame_and_builds_it_as_the_whole_chunk_would(first_run):
    """What a dropped chunk still makes, its last frame (PendingInputs.last), is that frame's input exactly."""
    import torch

    from amg.gan.inference import AvatarGenerator, FrameStream
    from amg.motion.tracks import tracked_motion
    from amg.tracking.tracks import Tracks

    layout, name, _, _, _ = first_run
    generator = AvatarGenerator(layout, name, engine="torch")
    stream = FrameStream(generator)
    stream.push(tracked_motion(Tracks.load(layout.tracks(name)), slice(0, 6)))
    prepared = stream.prepare(6, final=True)
    whole, last = stream.build(prepared), stream.build(prepared.last())
    assert len(prepared) == 6 and prepared.last().start == 5 and last.shape[0] == 1
    assert torch.equal(whole[-1:], last)
