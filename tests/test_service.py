"""`amg serve`: every endpoint and error path, the persistent queue across restarts, a short load test, and
one browser test in headless Chromium. The jobs run a light runner that writes real mp4s with the uploaded
speech (the models are tested elsewhere; here the service is)."""

from __future__ import annotations

import json
import math
import re
import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import WebSocketDisconnect
from fastapi.testclient import TestClient

from amg.config import LABEL, MAX_LABEL_CHARS, MotionOptions
from amg.core.checkpoints import save_checkpoint
from amg.core.layout import Layout
from amg.core.progress import report
from amg.media import load_audio, probe_video, write_wav
from amg.media.output import write_generated_video
from amg.media.provenance import Provenance
from amg.service.app import ServiceSettings, create_app, running_server
from amg.service.jobs import JobStore

from conftest import require_shared

AVATAR = "anna"


class LightRunner:
    """Renders grey frames as long as the job's speech, with the speech muxed in; `delay` s per frame."""

    def __init__(self, layout: Layout, delay: float = 0.0):
        self.layout, self.delay = layout, delay

    def _frames(self, n: int):
        for _ in range(n):
            time.sleep(self.delay)
            yield np.full((64, 64, 3), 128, np.uint8)

    def render(self, job) -> Path:
        audio = load_audio(self.layout.audio_source(job.audio))
        n = math.ceil(len(audio) / 640)
        path = self.layout.generated_video(job.audio, job.avatar)
        return write_generated_video(path, self._frames(n), n, audio, 30, Provenance.new(job.avatar, job.audio), LABEL)

    def train(self, job) -> None:
        for step in range(5):
            time.sleep(self.delay)
            report("gan", step + 1, 5)
        make_trained(self.layout, job.avatar)

    def close(self) -> None:
        pass


class LiveLightRunner(LightRunner):
    """Also streams live: a grey frame, at once, for each 40 ms of speech pushed."""

    def live(self, avatar: str, on_frame, options, framing=None) -> LightLiveSession:
        return LightLiveSession(on_frame)


class LightLiveSession:
    """What the service uses of amg.live.LiveSession, without a model."""

    size, frame_size, dropped = 64, (64, 64), 0

    def __init__(self, on_frame):
        self.on_frame, self.frames = on_frame, SimpleNamespace(done=0)

    def push(self, samples: np.ndarray) -> None:
        for start in range(0, len(samples) - 639, 640):
            image = np.full((64, 64, 3), 128, np.uint8)
            audio = samples[start : start + 640]
            self.on_frame(
                SimpleNamespace(index=self.frames.done, image=image, latency_s=0.0, dropped=False, audio=audio)
            )
            self.frames.done += 1

    def finish(self) -> None:
        pass


def make_trained(layout: Layout, name: str) -> None:
    """The files by which an avatar counts as trained (finished checkpoints)."""
    for path in (layout.audio2expression(name), layout.audio2headpose(name), layout.gan_checkpoint(name)):
        save_checkpoint(path, finished=True)
    layout.head2body(name).write_bytes(b"-")
    layout.pose2face(name).write_bytes(b"-")
    layout.eye_model(name).write_bytes(b"-")
    layout.gan_references(name).write_bytes(b"-")


def speech_bytes(tmp_path: Path, seconds: float = 1.0) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    path = tmp_path / "speech.wav"
    write_wav(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
    return path.read_bytes()


@pytest.fixture
def layout(tmp_path) -> Layout:
    layout = Layout(tmp_path / "root")
    make_trained(layout, AVATAR)
    return layout


def client_for(layout: Layout, runner=None, **settings) -> TestClient:
    app = create_app(layout.root, ServiceSettings(**settings), runner or LightRunner(layout))
    return TestClient(app)


def avatar_states(client: TestClient) -> dict[str, str]:
    """Each avatar's state, from its card."""
    return {card["name"]: card["status"] for card in client.get("/api/avatars").json()}


def wait_for(client: TestClient, job_id: str, status: str = "done", timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] == status:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {status!r}: {job}")


def test_render_job_from_upload_to_download_and_delete(layout, tmp_path):
    with client_for(layout) as client:
        assert avatar_states(client) == {AVATAR: "trained"}
        response = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path, 1.5))
        assert response.status_code == 202
        job = response.json()
        assert job["status"] in ("queued", "running") and len(job["id"]) == 32
        done = wait_for(client, job["id"])
        assert done["progress"] == 1 and done["video_url"] == f"/api/jobs/{job['id']}/video"

        video = client.get(done["video_url"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        saved = tmp_path / "got.mp4"
        saved.write_bytes(video.content)
        assert abs(probe_video(saved).duration - 1.5) <= 1 / 25 + 1e-3
        ranged = client.get(done["video_url"], headers={"Range": "bytes=0-99"})  # a browser seeking
        assert ranged.status_code == 206 and len(ranged.content) == 100
        assert ranged.headers["content-range"].startswith("bytes 0-99/")

        assert [j["id"] for j in client.get("/api/jobs").json()] == [job["id"]]
        speech_dir = layout.audio_dir(f"job-{job['id']}")
        assert speech_dir.is_dir()
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
        assert client.get(f"/api/jobs/{job['id']}").status_code == 404
        assert not speech_dir.exists() and not layout.output_dir(f"job-{job['id']}", AVATAR).exists()


def test_a_render_job_keeps_its_blink_and_seed_options_for_the_runner(layout, tmp_path):
    seen = []

    class Recording(LightRunner):
        def render(self, job):
            seen.append(json.loads(job.options))
            return super().render(job)

    with client_for(layout, Recording(layout)) as client:
        url = f"/api/jobs?avatar={AVATAR}&blinks=off&blink_rate=0.5&seed=7"
        job = client.post(url, content=speech_bytes(tmp_path)).json()
        assert job["options"] == {"seed": 7, "blinks": "off", "blink_rate": 0.5, "label": LABEL, "framing": "source"}
        wait_for(client, job["id"])
        url = f"/api/jobs?avatar={AVATAR}&label=&framing=crop"
        plain = client.post(url, content=speech_bytes(tmp_path)).json()
        wait_for(client, plain["id"])
        for bad in ("label=two%0Alines", f"label={'x' * (MAX_LABEL_CHARS + 1)}", "framing=wide"):  # nothing stored
            refused = client.post(f"/api/jobs?avatar={AVATAR}&{bad}", content=speech_bytes(tmp_path))
            assert refused.status_code == 422
    assert seen == [
        {"seed": 7, "blinks": "off", "blink_rate": 0.5, "label": LABEL, "framing": "source"},
        # No visible label (still watermarked), the generator's square crop.
        {"seed": 0, "blinks": "natural", "blink_rate": 1.0, "label": "", "framing": "crop"},
    ]
    motion = {k: v for k, v in seen[0].items() if k not in ("label", "framing")}  # they go to the render config
    assert MotionOptions(**motion).blinks == "off"  # what the pipeline runner makes of them


def test_a_job_database_from_before_the_options_column_is_upgraded(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, avatar TEXT NOT NULL, audio TEXT, status TEXT "
        "NOT NULL, stage TEXT NOT NULL DEFAULT '', progress REAL NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', "
        "created REAL NOT NULL, started REAL, finished REAL)"
    )
    old.execute(
        "INSERT INTO jobs (id, kind, avatar, audio, status, created) VALUES ('a' , 'render', 'x', 'y', 'queued', 1)"
    )
    old.commit()
    old.close()
    store = JobStore(path)
    assert store.get("a").options == "{}" and store.get("a").as_dict()["options"] == {}
    store.close()


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("post", "/api/jobs?avatar=..%2Fetc", 400),  # traversal in a name
        ("post", "/api/jobs?avatar=%2Fetc%2Fpasswd", 400),  # absolute path
        ("post", "/api/jobs?avatar=%C3%A9l%C3%A8ve", 400),  # odd unicode
        ("post", "/api/jobs?avatar=nobody", 409),  # no such trained avatar
        ("post", "/api/jobs", 422),  # no avatar given
        ("post", f"/api/jobs?avatar={AVATAR}&blinks=sometimes", 422),  # not a blink mode
        ("post", f"/api/jobs?avatar={AVATAR}&blink_rate=9", 422),  # over the multiplier's bound
        ("post", f"/api/jobs?avatar={AVATAR}&seed=x", 422),
        ("post", f"/api/jobs?avatar={AVATAR}&seed=-1", 422),  # numpy takes no negative seed
        ("get", "/api/jobs/..%2F..%2Fservice", 404),  # traversal in an id: matches no route
        ("get", "/api/jobs/0123456789abcdef0123456789abcdef", 404),
        ("get", "/api/jobs?avatar=..", 400),
        ("delete", "/api/jobs/not-a-job", 400),
        ("post", "/api/avatars/..%2E", 400),
        ("post", f"/api/avatars/{AVATAR}", 409),  # exists already
    ],
)
def test_bad_requests_get_a_json_error_never_a_traceback(layout, tmp_path, method, url, status):
    with client_for(layout) as client:
        response = getattr(client, method)(url, **({"content": speech_bytes(tmp_path)} if method == "post" else {}))
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"] and "Traceback" not in body["error"]


def test_uploads_are_checked_by_decoding_and_limited_while_streaming(layout, tmp_path):
    with client_for(layout, max_upload_mb=0.05, max_audio_s=1.0) as client:
        url = f"/api/jobs?avatar={AVATAR}"
        assert client.post(url, content=b"").status_code == 400
        not_audio = client.post(url, content=b"RIFF....WAVEfmt " + bytes(2000))  # looks like a wav, is not one
        assert not_audio.status_code == 415 and "decode" in not_audio.json()["error"]
        too_long = client.post(url, content=speech_bytes(tmp_path, 1.4))
        assert too_long.status_code == 413 and "limit" in too_long.json()["error"]

        def chunks():  # no Content-Length: only counting while streaming can stop it
            for _ in range(100):
                yield bytes(1024)

        too_big = client.post(url, content=chunks())
        assert too_big.status_code == 413
        assert client.get("/api/jobs").json() == []
        assert not any((layout.root / "service" / "uploads").iterdir())  # refused uploads leave nothing behind


def long_silent_flac(path: Path, hours: float, rate: int = 8000) -> Path:
    """`hours` of digital silence as FLAC: a few MB that decode to gigabytes (a decompression bomb)."""
    import av

    block = np.zeros((1, rate * 60), np.int16)  # a minute per frame
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        for minute in range(int(hours * 60)):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.rate, frame.pts = rate, minute * block.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def peak_rss_growth_mb(fn) -> float:
    """How far this process's peak resident memory rises above its current one while `fn` runs."""

    def status_kb(field: str) -> int:
        line = next(row for row in Path("/proc/self/status").read_text().splitlines() if row.startswith(field))
        return int(line.split()[1])

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = status_kb("VmRSS:")
    fn()
    return (status_kb("VmHWM:") - before) / 1024


def test_a_decompression_bomb_is_refused_without_decoding_it_all(layout, tmp_path):
    bomb = long_silent_flac(tmp_path / "bomb.flac", hours=4).read_bytes()
    assert len(bomb) < 4 * 1024 * 1024  # well under the upload limit
    with client_for(layout, max_upload_mb=50, max_audio_s=600) as client:
        response = {}
        growth = peak_rss_growth_mb(lambda: response.update(r=client.post(f"/api/jobs?avatar={AVATAR}", content=bomb)))
        assert response["r"].status_code == 413 and "600 s" in response["r"].json()["error"]
        assert client.get("/api/jobs").json() == []
    assert growth < 100, f"peak RSS grew by {growth:.0f} MB"


def test_errors_to_clients_name_no_server_path(layout):
    with client_for(layout) as client:
        not_audio = client.post(f"/api/jobs?avatar={AVATAR}", content=b"RIFF....WAVEfmt " + bytes(2000))
    error = not_audio.json()["error"]
    assert not_audio.status_code == 415 and "the upload is not a readable media file" in error
    assert str(layout.root) not in error and "uploads" not in error


def test_the_access_log_shows_no_token(layout, capsys):
    import httpx

    app = create_app(layout.root, ServiceSettings(token="s3cret"), LightRunner(layout))
    with running_server(app, log_level="info") as url:  # uvicorn's own access log, to the captured stdout
        assert httpx.get(f"{url}/api/avatars?token=s3cret").status_code == 200
    logged = capsys.readouterr()
    assert '"GET /api/avatars?token=*** HTTP/1.1" 200' in logged.out
    assert "s3cret" not in logged.out + logged.err


def test_the_api_token_is_required_on_every_endpoint_when_set(layout):
    with client_for(layout, token="s3cret") as client:
        for path in ("/", "/docs", "/openapi.json", "/api/avatars", "/api/jobs"):
            response = client.get(path)
            assert response.status_code == 401 and "token" in response.json()["error"]
        assert client.get("/api/avatars", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/avatars", headers={"X-API-Token": "s3cret"}).status_code == 200
        assert client.get("/api/avatars?token=s3cret").status_code == 200
        assert client.get("/api/avatars", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_live_websocket_takes_the_token_as_every_http_request_does(layout):
    with client_for(layout, runner=LiveLightRunner(layout), token="s3cret") as client:
        for headers, query in [
            ({"Authorization": "Bearer s3cret"}, ""),
            ({"X-API-Token": "s3cret"}, ""),
            ({}, "&token=s3cret"),  # a browser's WebSocket cannot set headers
        ]:
            with client.websocket_connect(f"/api/live?avatar={AVATAR}{query}", headers=headers) as ws:
                ready = {"type": "ready", "size": 64, "width": 64, "height": 64, "fps": 25, "sample_rate": 16000}
                assert ws.receive_json() == ready
                ws.send_bytes(bytes(2560))  # 80 ms of silence: two frames
                ws.send_text("end")
                frames = [ws.receive_bytes() for _ in range(2)]
                assert all(frame.endswith(bytes(1280)) for frame in frames)  # each with its 40 ms of sound
                assert ws.receive_json() == {"type": "end", "frames": 2, "dropped": 0}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with client.websocket_connect(f"/api/live?avatar={AVATAR}", headers=headers) as ws:
                assert ws.receive_json() == {
                    "type": "error",
                    "error": "This service needs its API token (?token=TOKEN).",
                }
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert closed.value.code == 1008


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("avatar=..", "Invalid avatar name"),
        ("avatar=../../etc", "Invalid avatar name '../../etc'"),
        ("avatar=%C3%A9t%C3%A9", "Invalid avatar name 'été'"),
        ("avatar=" + "a" * 200, "(200 characters)"),
        ("", "The avatar name is empty."),
        ("avatar=nobody", "not trained"),
        (f"avatar={AVATAR}&seed=-1", "Config seed: expected a finite number >= 0, got -1."),
        (f"avatar={AVATAR}&seed=x", "Config seed: expected int, got 'x'."),
        (f"avatar={AVATAR}&blink_rate=9", "Config blink_rate: expected a number <= 5, got 9.0."),
        (f"avatar={AVATAR}&blinks=sometimes", "Config blinks: use one of natural, off, got 'sometimes'."),
        (f"avatar={AVATAR}&framing=full", "framing: use one of source, crop, got 'full'."),
    ],
)
def test_a_live_stream_with_a_bad_parameter_is_refused_with_the_reason_and_no_traceback(layout, caplog, query, error):
    with client_for(layout, runner=LiveLightRunner(layout)) as client:
        with client.websocket_connect(f"/api/live?{query}") as ws:
            refusal = ws.receive_json()
            assert refusal["type"] == "error" and error in refusal["error"], refusal
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008
    assert "Traceback" not in caplog.text


def test_page_and_docs_are_served(layout):
    with client_for(layout) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<video" in page.text and "/api/jobs" in page.text
        assert "http" not in page.text.replace("http-equiv", "")  # no external CDN: works offline
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        # Offline: every script and style the page loads is served here, not from a CDN.
        assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert assets and all(a.startswith("/docs-assets/") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/api/avatars", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/video"} <= set(paths)


def test_jobs_survive_a_restart(layout, tmp_path):
    with client_for(layout) as client:
        client.app.state.worker.stop()  # a service that stops before it gets to the jobs
        first = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path)).json()
        second = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path)).json()
        assert client.get(f"/api/jobs/{second['id']}").json()["queue_position"] == 2
    store = JobStore(layout.root / "service" / "jobs.sqlite3")
    assert store.claim_next().id == first["id"]  # as if the service died while rendering the first
    store.close()
    with client_for(layout) as client:  # the restarted service re-runs the interrupted job and runs the queued one
        for job in (first, second):
            assert wait_for(client, job["id"])["status"] == "done"
            assert client.get(f"/api/jobs/{job['id']}/video").status_code == 200


def test_a_running_job_can_be_cancelled_and_a_failing_one_reports_why(layout, tmp_path):
    with client_for(layout, runner=LightRunner(layout, delay=0.05)) as client:
        job = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path, 4)).json()
        running = wait_for(client, job["id"], "running")
        time.sleep(1.2)
        progress = client.get(f"/api/jobs/{job['id']}").json()
        assert 0 < progress["progress"] < 1 and progress["eta_s"] > 0 and progress["stage"] == "render"
        assert client.delete(f"/api/jobs/{running['id']}").status_code == 204
        time.sleep(1.0)
        assert not layout.output_dir(f"job-{job['id']}", AVATAR).exists()

    class Failing(LightRunner):
        def render(self, job):
            raise RuntimeError("the GPU caught fire")

    with client_for(layout, runner=Failing(layout)) as client:
        job = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path)).json()
        failed = wait_for(client, job["id"], "failed")
        assert failed["error"] == "the GPU caught fire"


def test_training_a_new_avatar_from_an_uploaded_video(layout):
    video = require_shared("video/obama_clip3.mp4")
    with client_for(layout, runner=LightRunner(layout, delay=0.2)) as client:
        assert client.post("/api/avatars/bob", content=b"not a video at all").status_code == 415
        response = client.post("/api/avatars/bob", content=video.read_bytes())
        assert response.status_code == 202 and response.json()["kind"] == "train"
        assert (layout.video_dir("bob") / "bob.mp4").read_bytes() == video.read_bytes()
        wait_for(client, response.json()["id"], "running")
        time.sleep(0.8)
        bob = next(a for a in client.get("/api/avatars").json() if a["name"] == "bob")
        assert bob["status"] == "training" and 0.25 <= bob["progress"] < 1  # inside the image-GAN stage's share
        wait_for(client, response.json()["id"])
        assert avatar_states(client)["bob"] == "trained"


def test_an_avatar_left_untrained_by_a_cancelled_training_can_be_retrained_or_deleted(layout):
    video = require_shared("video/obama_clip3.mp4").read_bytes()
    with client_for(layout, runner=LightRunner(layout, delay=0.3)) as client:
        job = client.post("/api/avatars/bob", content=video).json()
        wait_for(client, job["id"], "running")
        layout.checkpoint_dir("bob").mkdir(parents=True)  # what a training leaves before it is cancelled
        assert client.delete("/api/avatars/bob").status_code == 409  # in use by the running training
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
        deadline = time.monotonic() + 10
        while "bob" in client.app.state.worker.busy_avatars() and time.monotonic() < deadline:
            time.sleep(0.05)  # the cancelled training stops at its next progress report
        assert avatar_states(client)["bob"] == "not trained"

        again = client.post("/api/avatars/bob", content=video)
        assert again.status_code == 202
        wait_for(client, again.json()["id"])
        assert client.post("/api/avatars/bob", content=video).status_code == 409  # trained: delete it first
        assert client.delete("/api/avatars/bob").status_code == 204
        assert not layout.video_dir("bob").exists() and not layout.checkpoint_dir("bob").exists()
        assert all(a["name"] != "bob" for a in client.get("/api/avatars").json())
        assert client.delete("/api/avatars/bob").status_code == 404


@pytest.fixture
def live_server(layout):
    """The service under uvicorn on a free loopback port; jobs take 25 ms per frame."""
    with running_server(create_app(layout.root, ServiceSettings(), LightRunner(layout, delay=0.025))) as url:
        yield url


def test_status_stays_fast_under_load_while_a_job_renders(live_server, tmp_path):
    import httpx

    job = httpx.post(f"{live_server}/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path, 8)).json()
    url = f"{live_server}/api/jobs/{job['id']}"
    latencies, errors = [], []

    def one(client: httpx.Client) -> None:
        start = time.perf_counter()
        response = client.get(url)
        latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
            errors.append(response.status_code)

    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        start = time.monotonic()
        for i in range(150):  # 50 requests/s for 3 s (benchmarks/service_load.py runs the long version)
            time.sleep(max(0.0, start + i / 50 - time.monotonic()))
            pool.submit(one, client)
    assert httpx.get(url).json()["status"] == "running"  # the render really was going on meanwhile
    assert not errors and len(latencies) == 150
    assert np.percentile(latencies, 95) < 0.5


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.slow
def test_the_page_renders_an_uploaded_speech_and_plays_it(live_server):
    from playwright.sync_api import sync_playwright

    speech = require_shared("audio/cmu_arctic_a0007.wav")
    duration = len(load_audio(speech)) / 16000
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        page.goto(live_server)
        page.wait_for_function("document.querySelector('#avatar').options.length > 0")
        page.set_input_files("#file", str(speech))
        page.click("#upload")
        page.wait_for_selector('.result[data-status="done"] video:not([hidden])', timeout=60_000)
        played = page.evaluate(
            """() => new Promise((resolve, reject) => {
                const v = document.querySelector('.result video');
                v.muted = true;
                const done = () => v.play().then(() => setTimeout(() => resolve([v.duration, v.currentTime]), 500), reject);
                if (v.readyState >= 1) done(); else v.addEventListener('loadedmetadata', done, { once: true });
                v.addEventListener('error', () => reject(new Error('video error ' + (v.error && v.error.code))));
            })"""
        )
        assert "Done" in page.inner_text(".result .state")
        browser.close()
    video_duration, position = played
    assert abs(video_duration - duration) <= 1 / 25 + 0.01
    assert position > 0.1  # it plays


def test_an_unexpected_error_is_a_json_500_without_internals(layout, monkeypatch):
    app = create_app(layout.root, ServiceSettings(), LightRunner(layout), start_worker=False)

    def broken(*args, **kwargs):
        raise RuntimeError("/secret/path/in/a/stack")

    monkeypatch.setattr(app.state.store, "list", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/jobs")
    assert response.status_code == 500 and "secret" not in response.text
    assert response.json() == {"error": "Internal error: see the service's log."}


def test_the_runner_loads_each_avatar_once_and_again_after_retraining(layout, monkeypatch):
    import os

    from amg.config import AvatarConfig, RenderConfig
    from amg.gan import inference
    from amg.service.worker import PipelineRunner

    loads = []
    monkeypatch.setattr(
        inference, "AvatarGenerator", lambda layout, name, engine, precision: loads.append(name) or object()
    )
    runner = PipelineRunner(layout, AvatarConfig(), RenderConfig())
    first = runner._generator(AVATAR)
    assert runner._generator(AVATAR) is first and loads == [AVATAR]
    checkpoint = layout.gan_checkpoint(AVATAR)
    os.utime(checkpoint, ns=(checkpoint.stat().st_atime_ns, checkpoint.stat().st_mtime_ns + 10**9))
    assert runner._generator(AVATAR) is not first and loads == [AVATAR, AVATAR]


def test_the_runner_gives_back_the_least_recently_used_avatar_past_its_bound(layout, monkeypatch):
    from amg.config import AvatarConfig, RenderConfig
    from amg.gan import inference
    from amg.service import worker

    monkeypatch.setattr(worker, "LOADED_AVATARS", 2)
    monkeypatch.setattr(inference, "AvatarGenerator", lambda layout, name, engine, precision: object())
    for name in ("b", "c"):
        layout.gan_checkpoint(name).parent.mkdir(parents=True, exist_ok=True)
        layout.gan_checkpoint(name).write_bytes(b"")
    runner = worker.PipelineRunner(layout, AvatarConfig(), RenderConfig())
    first = runner._generator(AVATAR)
    runner._generator("b")
    assert runner._generator(AVATAR) is first  # used last: "b" is now the oldest
    runner._generator("c")
    assert runner._generator(AVATAR) is first and runner.loads == {AVATAR: 1, "b": 1, "c": 1}
    runner._generator("b")
    assert runner.loads["b"] == 2 and list(runner._generators) == [AVATAR, "b"]


def test_a_render_jobs_progress_covers_its_features_and_head_motion_before_the_frames(layout):
    from amg.service.worker import Worker

    store = JobStore(layout.root / "service" / "progress.sqlite3")
    job = store.add("render", AVATAR, "speech")
    store.claim_next()
    sink = Worker(store, LightRunner(layout), layout)._sink(job)
    seen = []
    for stage in ("audio.embedding", "audio.vad", "motion.head", "render"):
        for done in (1, 2):  # the end of each stage is always written
            sink(stage, done, 2)
        seen.append((store.get(job.id).stage, round(store.get(job.id).progress, 3)))
    store.close()
    assert seen == [("audio.embedding", 0.1), ("audio.vad", 0.15), ("motion.head", 0.25), ("render", 1.0)]


def test_progress_keys_are_stage_names_and_the_trained_stages_are_among_them():
    from amg.core.progress import STAGE_NAMES
    from amg.service.worker import STAGE_SHARES
    from amg.stages import STAGES

    keys = {key for shares in STAGE_SHARES.values() for key in shares}
    assert {key.partition(".")[0] for key in keys} <= set(STAGE_NAMES)
    assert {stage.name for stage in STAGES} <= set(STAGE_NAMES)


def test_the_service_asks_the_pipelines_question_whether_an_avatar_renders(layout, tmp_path, monkeypatch):
    import amg.stages

    with client_for(layout) as client:
        assert avatar_states(client) == {AVATAR: "trained"}
    # The answer comes from amg.stages (as `amg run`'s render asks it), not from a list of files of its own.
    monkeypatch.setattr(amg.stages, "untrained_stages", lambda layout, avatar: ["gan"])
    with client_for(layout) as client:
        assert avatar_states(client) == {AVATAR: "not trained"}
        response = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path))
        assert response.status_code == 409


# --- the security model: token in no log, allowed origins, idle streams, one server per DATAROOT ----------------
def test_the_live_websockets_log_line_shows_no_token(layout, capsys):
    from websockets.sync.client import connect

    app = create_app(layout.root, ServiceSettings(token="s3cret"), LiveLightRunner(layout))
    with running_server(app, log_level="info") as url:
        with connect(f"{url.replace('http', 'ws', 1)}/api/live?avatar={AVATAR}&token=s3cret") as ws:
            assert json.loads(ws.recv())["type"] == "ready"
            ws.send("end")
            assert json.loads(ws.recv())["type"] == "end"
    logged = capsys.readouterr()
    assert f'"WebSocket /api/live?avatar={AVATAR}&token=***" [accepted]' in logged.out + logged.err
    assert "s3cret" not in logged.out + logged.err


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [
        (None, (), 202),  # not a browser: curl, a script
        ("http://testserver", (), 202),  # the service's own page
        ("http://evil.example", (), 403),
        ("null", (), 403),  # a sandboxed page, a file:// page
        ("https://app.example.org", ("https://app.example.org/",), 202),
    ],
)
def test_a_page_of_another_site_may_not_change_anything(layout, tmp_path, origin, allowed, status):
    """A "simple" cross-site request (text/plain: no preflight) is what a page of any site can send."""
    headers = {"Content-Type": "text/plain"} | ({"Origin": origin} if origin else {})
    with client_for(layout, allowed_origins=allowed) as client:
        response = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path), headers=headers)
        assert response.status_code == status, response.text
        jobs = client.get("/api/jobs", headers=headers).json()  # reading is no change: any origin
        assert len(jobs) == (status == 202)
        if status == 403:
            assert response.json()["error"].endswith(f"`amg serve ... --allow-origin {origin}`.")
            assert client.delete(f"/api/avatars/{AVATAR}", headers=headers).status_code == 403
            assert avatar_states(client) == {AVATAR: "trained"}


def test_a_page_of_another_site_may_not_stream_live(layout):
    with client_for(layout, runner=LiveLightRunner(layout), allowed_origins=("https://ok.example",)) as client:
        with client.websocket_connect(f"/api/live?avatar={AVATAR}", headers={"Origin": "http://evil.example"}) as ws:
            assert "a web page of http://evil.example may not use" in ws.receive_json()["error"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008
        for headers in ({"Origin": "https://ok.example"}, {"Origin": "http://testserver"}, {}):
            with client.websocket_connect(f"/api/live?avatar={AVATAR}", headers=headers) as ws:
                assert ws.receive_json()["type"] == "ready"
                ws.send_text("end")
                assert ws.receive_json()["type"] == "end"


@pytest.mark.parametrize("chatter", [False, True])
def test_a_live_client_that_sends_no_speech_loses_its_slot(layout, chatter):
    """Silent, or sending only text and empty messages to look alive (every 0.25 s for 1.5 s): either way the slot
    is freed 1 s after the last speech, not 1 s after the last message."""
    with client_for(layout, runner=LiveLightRunner(layout), live_idle_s=1.0) as client:  # one slot (1 worker)
        with client.websocket_connect(f"/api/live?avatar={AVATAR}") as ws:
            assert ws.receive_json()["type"] == "ready"
            start = time.monotonic()
            for _ in range(6 if chatter else 0):
                time.sleep(0.25)
                ws.send_text("ping")
                ws.send_bytes(b"")
            assert ws.receive_json() == {
                "type": "error",
                "error": "No speech received for 1 s: the stream is closed to free its slot.",
            }
            assert ws.receive_json() == {"type": "end", "frames": 0, "dropped": 0}
            assert time.monotonic() - start < 2.3  # reset by the chatter, it would end 2.5 s after `ready`
        with client.websocket_connect(f"/api/live?avatar={AVATAR}") as ws:  # the slot is free again
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(bytes(1280))
            assert len(ws.receive_bytes()) > 1280
            ws.send_text("end")
            assert ws.receive_json()["type"] == "end"


def test_one_server_per_dataroot_and_a_killed_servers_lock_is_taken_over(layout, capsys, caplog):
    import logging
    import os
    import subprocess
    import sys

    from amg.cli import main as amg_main
    from amg.service.lock import server_lock

    holder = (
        "import sys, time; from amg.core.layout import Layout; from amg.service.lock import server_lock\n"
        "with server_lock(Layout(sys.argv[1]), 'http://127.0.0.1:8123'):\n    print('locked', flush=True)\n"
        "    time.sleep(120)"
    )
    other = subprocess.Popen([sys.executable, "-c", holder, str(layout.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "locked\n"
        assert amg_main(["serve", str(layout.root), "--port", "8124"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: DATAROOT {layout.root} is already served by `amg serve` PID {other.pid} on ")
        assert "at http://127.0.0.1:8123, since " in err and "\n" not in err
    finally:
        other.kill()  # as kill -9: no `finally` of its own runs
        other.wait()
    assert f"PID {other.pid}" in layout.server_lock().read_text()  # what it left
    with caplog.at_level(logging.INFO), server_lock(layout, "http://127.0.0.1:8124"):
        assert f"PID {os.getpid()} " in layout.server_lock().read_text()
    assert f"Taking over the server lock of `amg serve` PID {other.pid}" in caplog.text
    assert layout.server_lock().read_text() == ""  # a clean end leaves nothing to take over


def test_deleting_a_symlinked_avatar_removes_the_link_and_keeps_what_it_points_to(layout, tmp_path):
    elsewhere = tmp_path / "shared" / "bob"
    elsewhere.mkdir(parents=True)
    (elsewhere / "bob.mp4").write_bytes(b"the video")
    layout.videos_dir().mkdir(parents=True)
    layout.video_dir("bob").symlink_to(elsewhere)
    with client_for(layout) as client:
        assert avatar_states(client)["bob"] == "not trained"
        assert client.delete("/api/avatars/bob").status_code == 204
        assert all(a["name"] != "bob" for a in client.get("/api/avatars").json())
        assert client.delete("/api/avatars/bob").status_code == 404
    assert not layout.video_dir("bob").is_symlink() and (elsewhere / "bob.mp4").read_bytes() == b"the video"


def test_a_dropped_upload_is_no_traceback_in_the_log(layout, capsys, caplog):
    import socket
    from urllib.parse import urlsplit

    app = create_app(layout.root, ServiceSettings(), LightRunner(layout))
    with running_server(app, log_level="info") as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port)) as client:
            head = f"POST /api/jobs?avatar={AVATAR} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            client.sendall(head.encode() + bytes(5000))  # then the client goes: the upload is cut off
        deadline = time.monotonic() + 10
        while any((layout.root / "service" / "uploads").glob("*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    logged = capsys.readouterr()
    assert "Traceback" not in logged.out + logged.err + caplog.text and "Unhandled error" not in caplog.text
    assert not any((layout.root / "service" / "uploads").glob("*"))


def test_a_service_without_workers_is_refused():
    from amg.core.errors import AmgError

    with pytest.raises(AmgError, match="at least 1 worker"):
        ServiceSettings(workers=0)


@pytest.mark.parametrize("origin", ["example.org", "https://example.org/app", "*", "ftp://example.org", ""])
def test_an_allowed_origin_no_browser_would_send_is_one_line(layout, capsys, origin):
    from amg.cli import main as amg_main

    assert amg_main(["serve", str(layout.root), "--allow-origin", origin]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Allowed origin {origin!r}: give it as a browser names it") and err.count("\n") == 1
    assert not layout.server_lock().exists()  # refused before the server starts


def test_the_runner_renders_with_the_jobs_label_and_framing_and_the_rest_as_motion_options(layout, monkeypatch):
    from amg import pipeline
    from amg.config import AvatarConfig, RenderConfig
    from amg.gan import inference
    from amg.service.worker import PipelineRunner

    calls = []
    monkeypatch.setattr(inference, "AvatarGenerator", lambda *args, **kwargs: object())
    monkeypatch.setattr(pipeline, "render", lambda *args, generator: calls.append(args) or Path("out.mp4"))
    runner = PipelineRunner(layout, AvatarConfig(), RenderConfig())
    store = JobStore(layout.job_database())
    options = {"seed": 3, "blinks": "off", "blink_rate": 1.0, "label": "", "framing": "crop"}
    runner.render(store.add("render", AVATAR, "speech", "a" * 32, options))
    runner.render(store.add("render", AVATAR, "speech", "b" * 32, {"seed": 0}))  # a job from before the options
    (*_, motion, cfg), (*_, _, old_cfg) = calls
    assert (cfg.label, cfg.framing) == ("", "crop") and motion == MotionOptions(seed=3, blinks="off")
    assert (old_cfg.label, old_cfg.framing) == (LABEL, "source")
