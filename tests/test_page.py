"""The web page: the endpoints it is built on (avatar cards with stills and training samples, presets and
overrides, a video without a face refused, cancel and resume, a render's outputs and waveform, the event stream),
with a light runner; then the whole way in real Chromium (Debian's `chromium`: no browser is downloaded) against
the real pipeline: a video becomes an avatar (fast preset, trained small), its training streams in without
polling, speech becomes a video that plays in the page, the avatar is deleted; a video without a face is refused
with the server's reason.

With AMG_PAGE_SCREENSHOTS=DIR the test also saves each state at desktop and phone widths into DIR (docs/serve.md
shows the ones in docs/images/): `AMG_PAGE_SCREENSHOTS=docs/images python -m pytest tests/test_page.py`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from amg.core.layout import Layout
from amg.media import VideoWriter
from amg.service.app import ServiceSettings, create_app, running_server
from amg.service.worker import stage_progress, training_config

from conftest import TINY, require_shared
from test_service import AVATAR, LightRunner, avatar_states, client_for, make_trained, speech_bytes, wait_for

NAME = "feifei"
# TINY, with a sample grid every 10 image-GAN steps: the page shows one while the training still runs.
TRAINING = TINY | {"gan.steps": 60, "gan.eval_every": 10}
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def faceless_video(path: Path) -> Path:
    """2 s of grey frames with a tone: a video AMG can decode, without anyone in it."""
    t = np.arange(32000) / 16000
    frames = (np.full((128, 128, 3), 120, np.uint8) for _ in range(50))
    with VideoWriter(path, fps=25, audio=(0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)) as out:
        for frame in frames:
            out.write(frame)
    return path


@pytest.fixture
def served(tmp_path) -> Layout:
    """A DATAROOT with trained avatar AVATAR, for the light runner (test_service's) to render."""
    layout = Layout(tmp_path / "root")
    make_trained(layout, AVATAR)
    return layout


def card_of(client, name: str) -> dict:
    return next(card for card in client.get("/api/avatars").json() if card["name"] == name)


def test_a_training_takes_a_preset_and_overrides_and_refuses_bad_ones_before_the_upload(served):
    video = require_shared("video/obama_clip3.mp4").read_bytes()
    with client_for(served, runner=LightRunner(served, delay=0.1)) as client:
        for query, status in [("preset=huge", 422), ("set=gan.nope=1", 400), ("set=gan.steps", 422)]:
            assert client.post(f"/api/avatars/bob?{query}", content=b"unread").status_code == status
        job = client.post("/api/avatars/bob?preset=fast&set=gan.steps=7&set=gan.size=96", content=video).json()
        assert job["options"] == {"preset": "fast", "set": {"gan.steps": "7", "gan.size": "96"}}
        assert job["warnings"] == ["The video lasts 20 s: at least 3 minutes of talking make a good avatar."]
        cfg = training_config(job["options"])  # what the pipeline runner trains with
        assert (cfg.gan.steps, cfg.gan.size, cfg.gan.ngf) == (7, 96, 16)  # ngf: the fast preset's
        wait_for(client, job["id"])
        bob = card_of(client, "bob")
    assert bob["status"] == "trained" and bob["preset"] == "fast" and bob["size_px"] == 96
    assert bob["video_s"] == pytest.approx(20, abs=0.5) and bob["disk_mb"] > 0


def test_the_presets_the_api_takes_are_amgs():
    import typing

    from amg.config import PRESETS
    from amg.service.routes.avatars import Preset

    assert typing.get_args(Preset) == PRESETS


def test_a_video_without_a_face_is_refused_with_the_reason_and_leaves_nothing(served, tmp_path):
    faceless = faceless_video(tmp_path / "nobody.mp4").read_bytes()
    with client_for(served) as client:
        response = client.post("/api/avatars/nobody", content=faceless)
    assert response.status_code == 422
    assert response.json()["error"].startswith("No face found in video 'nobody' (2 frames checked).")
    assert not served.video_dir("nobody").exists() and not any(served.upload("x").parent.iterdir())


def test_a_cancelled_training_is_kept_and_resumes_with_its_options(served):
    video = require_shared("video/obama_clip3.mp4").read_bytes()
    with client_for(served, runner=LightRunner(served, delay=0.3)) as client:
        job = client.post("/api/avatars/bob?preset=fast", content=video).json()
        wait_for(client, job["id"], "running")
        assert client.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        deadline = time.monotonic() + 10
        while "bob" in client.app.state.worker.busy_avatars() and time.monotonic() < deadline:
            time.sleep(0.05)  # the cancelled training stops at its next progress report
        assert avatar_states(client)["bob"] == "not trained" and served.video_dir("bob").is_dir()
        resumed = client.post("/api/avatars/bob/resume")
        assert resumed.status_code == 202 and resumed.json()["options"] == {"preset": "fast", "set": {}}
        wait_for(client, resumed.json()["id"])
        assert avatar_states(client)["bob"] == "trained"
        assert client.post("/api/avatars/bob/resume").status_code == 409  # trained already
        assert client.post("/api/avatars/nobody/resume").status_code == 404


def test_a_failed_training_shows_its_reason_on_the_card(served):
    class Failing(LightRunner):
        def train(self, job):
            raise RuntimeError("tracking lost the face")

    video = require_shared("video/obama_clip3.mp4").read_bytes()
    with client_for(served, runner=Failing(served)) as client:
        wait_for(client, client.post("/api/avatars/bob", content=video).json()["id"], "failed")
        bob = card_of(client, "bob")
    assert bob["status"] == "failed" and bob["error"] == "tracking lost the face" and bob["preset"] == "default"


def test_a_card_shows_a_still_of_the_video_and_the_latest_training_sample(served):
    video = require_shared("video/obama_clip3.mp4").read_bytes()
    with client_for(served, runner=LightRunner(served, delay=0.1)) as client:
        wait_for(client, client.post("/api/avatars/bob", content=video).json()["id"])
        assert card_of(client, "bob")["sample_url"] is None
        assert client.get("/api/avatars/bob/sample").status_code == 404
        samples = served.gan_samples_dir("bob")
        samples.mkdir(parents=True)
        for step in (10, 200):
            cv2.imwrite(str(samples / f"step_{step:07d}.jpg"), np.full((8, 8 * step // 10, 3), 99, np.uint8))
        card = card_of(client, "bob")
        still = client.get(card["still_url"])
        sample = client.get(card["sample_url"])
        assert client.get("/api/avatars/anna/still").status_code == 404  # trained without a video here
    assert card["sample_url"] == "/api/avatars/bob/sample?v=step_0000200"
    assert still.headers["content-type"] == "image/jpeg" and "max-age" in still.headers["cache-control"]
    assert cv2.imdecode(np.frombuffer(still.content, np.uint8), cv2.IMREAD_COLOR).shape == (320, 320, 3)
    assert cv2.imdecode(np.frombuffer(sample.content, np.uint8), cv2.IMREAD_COLOR).shape == (8, 160, 3)


def test_a_render_offers_its_outputs_and_its_speech_as_a_waveform(served, tmp_path):
    with client_for(served) as client:
        job = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path, 1.5)).json()
        done = wait_for(client, job["id"])
        base = f"/api/jobs/{job['id']}"
        assert done["outputs"] == {"video": f"{base}/outputs/video", "speech": f"{base}/outputs/speech"}
        video, speech = client.get(done["outputs"]["video"]), client.get(done["outputs"]["speech"])
        wave = client.get(f"{done['waveform_url']}?bins=300").json()
        statuses = [client.get(f"{base}/outputs/{name}").status_code for name in ("enhanced", "other")]
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    assert speech.headers["content-type"] == "audio/wav" and speech.content[:4] == b"RIFF"
    assert wave["duration_s"] == 1.5 and len(wave["peaks"]) == 300
    assert all(-1 <= low <= high <= 1 for low, high in wave["peaks"]) and max(h for _, h in wave["peaks"]) > 0.3
    assert statuses == [404, 422]  # no enhanced video (the service renders without --enhance); no such output


def test_a_cancelled_render_is_kept_as_cancelled_without_its_files(served, tmp_path):
    with client_for(served, runner=LightRunner(served, delay=0.05)) as client:
        job = client.post(f"/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path, 4)).json()
        wait_for(client, job["id"], "running")
        assert client.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        time.sleep(0.8)
        assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
    assert not served.audio_dir(f"job-{job['id']}").exists()
    assert not served.output_dir(f"job-{job['id']}", AVATAR).exists()


def test_each_stage_of_a_job_has_its_own_progress():
    stages = stage_progress("train", 0.27 + 0.73 * 0.5)  # halfway through the image GAN
    assert [s["stage"] for s in stages] == [
        "preprocess",
        "audio.embedding",
        "audio.vad",
        "motion.expression",
        "motion.pose",
        "gan",
    ]  # motion.head takes no share of the bar: no row
    assert [s["progress"] for s in stages] == [1, 1, 1, 1, 1, 0.5]
    assert [s["progress"] for s in stage_progress("render", 0.05)] == [0.5, 0, 0, 0]


def read_events(lines, until) -> list[tuple[str, object]]:
    """Server-sent events (name, JSON data) from a stream's lines, up to the first for which `until` holds."""
    events, name = [], None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            if until(*events[-1]):
                return events
    raise AssertionError(f"the stream ended before the event looked for: {events}")


def test_the_event_stream_sends_every_card_and_job_then_each_change(served, tmp_path):
    app = create_app(served.root, ServiceSettings(), LightRunner(served, delay=0.02))
    with running_server(app) as url, httpx.stream("GET", f"{url}/api/events", timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        first = read_events(lines, lambda name, data: name == "ready")
        job = httpx.post(f"{url}/api/jobs?avatar={AVATAR}", content=speech_bytes(tmp_path, 1)).json()
        changes = read_events(lines, lambda name, data: name == "job" and data["status"] == "done")
        httpx.delete(f"{url}/api/jobs/{job['id']}")
        gone = read_events(lines, lambda name, data: name == "job-gone")
    assert [name for name, _ in first] == ["reset", "avatar", "ready"] and first[1][1]["name"] == AVATAR
    assert {data["id"] for name, data in changes if name == "job"} == {job["id"]}
    assert [data["status"] for name, data in changes][-1] == "done" and "stages" in changes[0][1]
    assert gone[-1] == ("job-gone", job["id"])


# The visible controls a screen reader could not name: no <label>, no aria-label, no text of their own.
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('button, input, select, textarea, video')]
    .filter((e) => e.getClientRects().length)
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map((e) => e.outerHTML.slice(0, 80))"""


class Screens:
    """The same page at each width; `shoot` saves what each shows of one part of it when screenshots are asked
    for."""

    def __init__(self, browser, url: str, folder: str | None):
        self.folder = Path(folder) if folder else None
        self.pages = {}
        for width, viewport in VIEWPORTS.items():
            self.pages[width] = browser.new_page(viewport=viewport)
            self.pages[width].on("dialog", lambda dialog: dialog.accept())  # the delete button asks first
            self.pages[width].goto(url)

    def each(self, action) -> None:
        for page in self.pages.values():
            action(page)

    def shoot(self, state: str, selector: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for width, page in self.pages.items():
            page.eval_on_selector(selector, "e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)  # images decoded, the scroll settled
            page.screenshot(path=str(self.folder / f"page-{state}-{width}.jpg"), type="jpeg", quality=60)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.slow
def test_the_page_makes_an_avatar_watches_it_train_plays_its_speech_and_deletes_it(tmp_path):
    from playwright.sync_api import sync_playwright

    video = require_shared("video/feifei_li_clip3.mp4")
    speech = require_shared("audio/cmu_arctic_a0007.wav")
    layout = Layout(tmp_path / "root")
    app = create_app(layout.root, ServiceSettings())
    with running_server(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        screens = Screens(browser, url, os.environ.get("AMG_PAGE_SCREENSHOTS"))
        page = screens.pages["desktop"]
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        screens.each(lambda pg: pg.wait_for_selector("#no-avatars:not([hidden])"))
        screens.shoot("empty", "body")

        # A video without a face is refused before it is queued, with the server's one-line reason.
        faceless = faceless_video(tmp_path / "nobody.mp4")
        screens.each(lambda pg: (pg.set_input_files("#video-file", str(faceless)), pg.click("#train")))
        screens.each(lambda pg: pg.wait_for_selector("#new-avatar-error:not(:empty)", timeout=60_000))
        refusal = page.inner_text("#new-avatar-error")
        screens.shoot("refused", "#new-title")

        page.set_input_files("#video-file", str(video))
        page.fill("#avatar-name", NAME)
        page.check("input[name=preset][value=fast]")
        page.click("#new-avatar summary")
        page.fill("#overrides", "\n".join(f"{key}={value}" for key, value in TRAINING.items()))
        page.click("#train")
        card = f'[data-avatar="{NAME}"]'
        page.wait_for_selector(f'{card}[data-status="training"]', timeout=60_000)
        started, counted = time.monotonic(), len(requests)
        screens.each(lambda pg: pg.wait_for_selector(".training figure:not([hidden]) img", timeout=600_000))
        screens.shoot("training", "#trainings-title")
        page.wait_for_selector(f'{card}[data-status="trained"]', timeout=600_000)
        training_s, training_requests = time.monotonic() - started, requests[counted:]
        screens.each(lambda pg: pg.wait_for_selector(f'{card}[data-status="trained"]', timeout=30_000))

        drop(page, "#speech-drop", speech)
        screens.pages["phone"].set_input_files("#file", str(speech))
        screens.shoot("trained", "#avatars-title")
        assert page.input_value("#avatar") == NAME  # the avatar just trained is the one offered
        unlabelled = page.evaluate(UNLABELLED_CONTROLS)
        page.focus("#upload")
        page.keyboard.press("Enter")  # the page works from the keyboard
        done = '.result[data-status="done"]'
        screens.each(lambda pg: pg.wait_for_selector(f"{done} video:not([hidden])", timeout=300_000))
        played = [page_plays(pg, f"{done} video") for pg in screens.pages.values()]
        screens.shoot("result", "#results-title")
        downloads = page.eval_on_selector_all(f"{done} .downloads a", "links => links.map(a => a.textContent)")
        options = page.inner_text(f"{done} .options")
        verdict = verify_in(page, app, next(layout.root.glob("output_data/*/generated_video.mp4")))

        page.focus(f"{card} .delete")
        page.keyboard.press("Enter")
        page.wait_for_selector(card, state="detached", timeout=30_000)
        browser.close()

    assert "No face found" in refusal and "nobody" in refusal
    assert unlabelled == []
    assert all(position > 0.2 for position in played)  # currentTime advanced: it plays
    assert downloads == ["Video (mp4)", "Speech (WAV)"] and "seed 0" in options
    assert verdict in (None, "made by AMG")
    assert not layout.video_dir(NAME).exists() and not layout.checkpoint_dir(NAME).exists()
    assert all(r.startswith((url, "data:")) for r in requests)  # nothing from outside: it works offline
    rate = len(training_requests) / training_s
    print(f"{len(training_requests)} requests in {training_s:.0f} s of training: {rate:.3f}/s")
    assert rate <= 1.0, training_requests


def page_plays(page, selector: str) -> float:
    """Play the video (muted: no user gesture) for a second; its currentTime then."""
    return page.eval_on_selector(
        selector,
        """v => new Promise((resolve, reject) => {
            v.muted = true;
            const go = () => v.play().then(() => setTimeout(() => { v.pause(); resolve(v.currentTime); }, 1000), reject);
            if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go, { once: true });
            v.addEventListener('error', () => reject(new Error('video error ' + (v.error && v.error.code))));
        })""",
    )


def drop(page, zone: str, file: Path) -> None:
    """Drop `file` on the page's drop zone `zone`, as a file dragged from the desktop is."""
    page.evaluate(
        """([zone, name, data]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name));
            document.querySelector(zone).dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true }));
        }""",
        [zone, file.name, base64.b64encode(file.read_bytes()).decode()],
    )


def verify_in(page, app, video: Path) -> str | None:
    """The page's verdict on `video` from its verify drop zone, which it shows only when the service has
    POST /api/verify (None, with the zone hidden, when it has not)."""
    if "/api/verify" not in app.openapi()["paths"]:
        assert page.is_hidden("#verify")
        return None
    page.set_input_files("#verify-file", str(video))
    page.wait_for_selector("#verify-result dd", timeout=120_000)
    return page.inner_text("#verify-result dd")
