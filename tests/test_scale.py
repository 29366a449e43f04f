"""Past one process: data-parallel training with torchrun (gloo, 2 CPU ranks) and the render fleet on Ray."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from amg.cli import main as amg_main
from amg.core import images
from amg.core.checkpoints import load_checkpoint
from amg.core.layout import Layout
from amg.media import iter_frames, load_audio, write_wav
from amg.tracking.tracks import Tracks

from conftest import TINY

pytestmark = pytest.mark.slow  # real stages on real footage, seconds each: `pytest -m 'not slow'` skips them


def _train_losses(log_dir) -> dict[str, dict[int, float]]:
    """The training losses TensorBoard holds, by tag and step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {t: {e.step: e.value for e in events.Scalars(t)} for t in events.Tags()["scalars"] if t.startswith("train/")}


def test_torchrun_trains_the_gan_on_two_ranks_as_one_process_does_and_resumes_on_one(first_run, tmp_path):
    """Two CPU ranks (gloo), each with half of every batch: the same losses as one process on the whole batch
    (within float rounding of the summation order); the checkpoint renders in one process, and a run begun on
    two ranks continues on one."""
    from amg.gan.inference import AvatarGenerator
    from amg.motion.tracks import tracked_motion

    layout, name, _, _, _ = first_run
    sets = [f"--set={k}={v}" for k, v in TINY.items() if k.startswith("gan.")]
    roots = {}
    for run_name in ("one", "two", "resumed"):
        root = tmp_path / run_name
        root.mkdir()
        (root / "input_data").symlink_to(layout.root / "input_data")  # the preprocessed avatar, shared
        roots[run_name] = Layout(root)
    # fp32: bf16's rounding differs between a whole batch and its halves far more than the summation order does.
    args = ["train", "{root}", name, "--stage", "gan", "--preset", "fast", "--precision", "fp32", *sets]

    def train(root: Layout, steps: int, ranks: int) -> None:
        command = [a.format(root=root.root) for a in args] + [f"--set=gan.steps={steps}"]
        if ranks == 1:
            assert amg_main(command) == 0
            return
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        done = subprocess.run([*launcher, "-m", "amg", *command], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    train(roots["one"], 20, 1)
    train(roots["two"], 20, 2)
    train(roots["resumed"], 10, 2)
    train(roots["resumed"], 20, 1)
    one = _train_losses(roots["one"].logs_dir(name) / "gan")
    assert set(one) >= {"train/g_loss", "train/d_frame", "train/l1"} and len(one["train/g_loss"]) == 20
    for other in ("two", "resumed"):
        losses = _train_losses(roots[other].logs_dir(name) / "gan")
        for tag, values in one.items():
            steps = sorted(values)
            # The all-reduce sums in another order, and adversarial steps amplify that rounding: the first 10 steps
            # agree to 1e-4, the last ones to a few 1e-3 (4 bicubic candidates; 2.4e-5 with 3 bilinear ones). A
            # wrong average (a rank's gradient counted twice, a missed bucket) is off by percents from step 2.
            got, want = [losses[tag][s] for s in steps], [values[s] for s in steps]
            np.testing.assert_allclose(got[:10], want[:10], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(got, want, rtol=5e-3, atol=5e-5)
    state = load_checkpoint(roots["two"].gan_checkpoint(name))
    assert state["finished"] and state["step"] == 20
    tracks = Tracks.load(roots["two"].tracks(name))
    frames = list(AvatarGenerator(roots["two"], name).frames(tracked_motion(tracks, slice(0, 4))))
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3) and np.std(frames) > 5


@pytest.fixture(scope="module")
def fleet(first_run, tmp_path_factory):
    """A DATAROOT with two trained avatars ("a" and "b": the TINY avatar under two names), three short speeches,
    and a local Ray of 2 CPUs."""
    ray = pytest.importorskip("ray")
    layout, name, _, _, _ = first_run
    fleet = Layout(tmp_path_factory.mktemp("fleet"))
    for avatar in ("a", "b"):
        folder = fleet.video_dir(avatar)
        folder.mkdir(parents=True)
        (folder / f"{avatar}.mp4").symlink_to(layout.video_source(name))
        (folder / "processed").symlink_to(layout.preprocess_dir(name))
        fleet.checkpoint_dir(avatar).parent.mkdir(parents=True, exist_ok=True)
        fleet.checkpoint_dir(avatar).symlink_to(layout.checkpoint_dir(name))
    speech = load_audio(layout.audio_source("male_gap"))
    for i, seconds in enumerate((2.0, 2.5, 3.0)):
        write_wav(fleet.audio_dir(f"s{i}") / f"s{i}.wav", speech[-int(seconds * 16000) :], 16000)
    write_wav(fleet.audio_dir("long") / "long.wav", np.tile(speech, 2), 16000)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield fleet
    ray.shutdown()


def _frames(path) -> np.ndarray:
    return np.stack(list(iter_frames(path)))


def test_six_jobs_over_two_avatars_run_on_ray_actors_that_keep_their_generators(fleet):
    """`amg batch --ray` (the service's Ray runner): every avatar's generator is loaded at most once per actor,
    and the videos are those of one process, frame for frame."""
    from amg.service.batch import read_manifest, render_manifest
    from amg.service.fleet import RayRunner

    manifest = fleet.root / "jobs.csv"
    manifest.write_text("audio,avatar,seed\n" + "".join(f"s{i},{a},{i}\n" for i in range(3) for a in "ab"))
    rows = read_manifest(manifest)
    runner = RayRunner(fleet, *_configs(), actors=2)
    assert render_manifest(fleet, rows, workers=2, runner=runner) == (6, 0)
    loads = runner.loads()
    assert len(loads) == 2 and all(n == 1 for actor in loads for n in actor.values())
    assert sum(len(actor) for actor in loads) <= 4  # each actor holds one or both avatars, each loaded once
    assert render_manifest(fleet, rows, workers=2, runner=runner) == (0, 6)  # resumable: what is there is kept
    runner.close()
    fleeted = {(r.audio, r.avatar): _frames(fleet.generated_video(r.audio, r.avatar)) for r in rows}
    for row in rows:  # the same renders in this process
        fleet.generated_video(row.audio, row.avatar).unlink()
    assert render_manifest(fleet, rows) == (6, 0)
    for row in rows:
        # The same pictures; each render's watermark carries its own render id (amg.media.watermark): two marks
        # differ by about 1.7 levels RMS before H.264 re-decides every block (38-40 dB seen), where another
        # render's motion or avatar would be under 25 dB. So: equal up to the mark and the codec.
        local = _frames(fleet.generated_video(row.audio, row.avatar))
        assert local.shape == fleeted[row.audio, row.avatar].shape
        assert images.psnr(local, fleeted[row.audio, row.avatar]) > 33


def _configs():
    from amg.config import AvatarConfig, RenderConfig

    return AvatarConfig(), RenderConfig()


def test_a_ray_actor_killed_mid_render_is_restarted_and_the_job_retried(fleet):
    """Through `amg serve --ray`'s job queue: the actor rendering a job is killed; Ray restarts it, the job runs
    again and is done, its video whole."""
    import ray
    from fastapi.testclient import TestClient

    from amg.service.app import ServiceSettings, create_app
    from amg.service.fleet import RayRunner

    runner = RayRunner(fleet, *_configs(), actors=2)
    app = create_app(fleet.root, ServiceSettings(workers=2), runner=runner)
    body = (fleet.audio_dir("long") / "long.wav").read_bytes()
    with TestClient(app) as client:
        job = client.post("/api/jobs?avatar=a", content=body).json()
        deadline = time.monotonic() + 120
        while (status := client.get(f"/api/jobs/{job['id']}").json())["progress"] < 0.3:
            assert time.monotonic() < deadline and status["status"] in ("queued", "running"), status
            time.sleep(0.05)
        ray.kill(runner.pool.actors[runner.pool.running[job["id"]]], no_restart=False)
        while (status := client.get(f"/api/jobs/{job['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["status"] == "done", status
        video = client.get(f"/api/jobs/{job['id']}/video")
        assert video.status_code == 200
    frames = _frames(fleet.generated_video(f"job-{job['id']}", "a"))
    assert len(frames) == round(len(load_audio(fleet.audio_source("long"))) / 640)
    assert not list(fleet.output_dir(f"job-{job['id']}", "a").glob("*.tmp*"))  # no half-written file left


def test_a_killed_torchrun_rank_fails_the_run_and_it_resumes_from_the_last_checkpoint(first_run, tmp_path):
    import os
    import signal

    layout, name, _, _, _ = first_run
    root = Layout(tmp_path / "killed")
    root.root.mkdir()
    (root.root / "input_data").symlink_to(layout.root / "input_data")
    sets = [f"--set={k}={v}" for k, v in TINY.items() if k.startswith("gan.")]
    command = ["train", str(root.root), name, "--stage", "gan", "--preset", "fast", *sets, "--set=gan.save_every=5"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run = subprocess.Popen([*launcher, "-m", "amg", *command, "--set=gan.steps=400"], stderr=subprocess.PIPE, text=True)
    checkpoint = root.gan_checkpoint(name)
    deadline = time.monotonic() + 300
    while not checkpoint.is_file():
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    rank1 = next(pid for pid in _children(run.pid) if b"LOCAL_RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes())
    os.kill(rank1, signal.SIGKILL)
    _, errors = run.communicate(timeout=120)
    assert run.returncode != 0 and "SIGKILL" in errors  # torchrun stops the other rank and says which failed
    saved = load_checkpoint(checkpoint)
    assert not saved["finished"] and saved["step"] % 5 == 0 and saved["step"] < 400
    assert amg_main([*command, f"--set=gan.steps={saved['step'] + 5}"]) == 0  # one process picks it up
    resumed = load_checkpoint(checkpoint)
    assert resumed["finished"] and resumed["step"] == saved["step"] + 5


def _children(pid: int) -> list[int]:
    """Every descendant process of `pid`."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            found.append(int(child))
            todo.append(int(child))
    return found


def test_a_job_cancelled_on_ray_stops_its_actor_which_takes_the_next_job(fleet):
    from fastapi.testclient import TestClient

    from amg.service.app import ServiceSettings, create_app
    from amg.service.fleet import RayRunner

    runner = RayRunner(fleet, *_configs(), actors=1)
    app = create_app(fleet.root, ServiceSettings(workers=1), runner=runner)
    with TestClient(app) as client:
        long = client.post("/api/jobs?avatar=b", content=(fleet.audio_dir("long") / "long.wav").read_bytes()).json()
        deadline = time.monotonic() + 120
        while client.get(f"/api/jobs/{long['id']}").json()["progress"] < 0.3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.delete(f"/api/jobs/{long['id']}").status_code == 204
        short = client.post("/api/jobs?avatar=b", content=(fleet.audio_dir("s0") / "s0.wav").read_bytes()).json()
        while (status := client.get(f"/api/jobs/{short['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert status["status"] == "done"
        assert client.get(f"/api/jobs/{long['id']}").status_code == 404
    assert not fleet.output_dir(f"job-{long['id']}", "b").exists()  # the cancelled job left no files
    assert runner.pool.free == {0} and not runner.pool.running
