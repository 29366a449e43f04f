"""Scaling out on this machine: data-parallel GAN training and the Ray render fleet.

    python benchmarks/scale.py [--steps 12] [--jobs 32] [--cost 0.5] [--renders 4]

Uses benchmarks/render.py's avatar `render_bench` in /tmp/amg-bench (default generator, 256 px).

(a) DDP: image-GAN steps/s with 1 and 2 CPU ranks under torchrun (gloo), from TensorBoard's step times (start-up
    excluded); and the per-step cost of the gradient all-reduce alone (two processes averaging the generator's
    and the discriminators' gradients, as amg.core.distributed does every step).
(b) The fleet's scheduling: RayRunner and its actor pool with a stand-in actor whose every job costs --cost
    seconds of waiting (not CPU): a SIMULATION of scheduling, since this machine has 2 cores. Per-job dispatch
    overhead (jobs of zero cost, one actor) and throughput for 1, 2, 4 and 8 actors against linear.
(c) Real renders: --renders jobs of 20 s of speech on 1 and 2 actors (both share this machine's 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from amg.config import AvatarConfig, GanConfig, MotionOptions, RenderConfig
from amg.core.layout import Layout
from amg.media import load_audio, write_wav
from amg.service.batch import BatchRow, render_job

sys.path.insert(0, str(Path(__file__).parent))
import render as render_bench  # noqa: E402  (the shared benchmark avatar)


# --- (a) DDP ---------------------------------------------------------------------------------------------------
def ddp_steps_per_s(layout: Layout, ranks: int, steps: int) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "input_data").symlink_to(layout.root / "input_data")
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        command = ["-m", "amg", "train", str(root), render_bench.AVATAR, "--stage", "gan", f"--set=gan.steps={steps}"]
        subprocess.run([*launcher, *command], check=True, capture_output=True)
        events = EventAccumulator(str(Layout(root).logs_dir(render_bench.AVATAR) / "gan"))
        events.Reload()
        times = [e.wall_time for e in events.Scalars("train/g_loss")]
    return (len(times) - 2) / (times[-1] - times[1])  # the first step pays for warm-up


def _all_reduce_worker(rank: int, sizes: list[int], repeats: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from amg.core.distributed import average_gradients

    params = [torch.nn.Parameter(torch.zeros(n)) for n in sizes]
    for p in params:
        p.grad = torch.randn(p.numel())
    average_gradients(params)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        average_gradients(params)
    if rank == 0:
        out.put((time.perf_counter() - start) / repeats)
    dist.destroy_process_group()


def all_reduce_ms(sizes: list[int], repeats: int = 20) -> float:
    out = mp.get_context("spawn").Queue()
    port = 29500 + os.getpid() % 1000
    mp.spawn(_all_reduce_worker, args=(sizes, repeats, port, out), nprocs=2)
    return out.get() * 1000


def gan_parameter_sizes(layout: Layout) -> list[int]:
    from amg.gan.inputs import GeneratorInputs
    from amg.gan.references import AvatarReferences
    from amg.gan.train import build_networks

    cfg = GanConfig()
    refs = AvatarReferences.load(layout.gan_references(render_bench.AVATAR))
    nets = build_networks(cfg, GeneratorInputs(refs, cfg.context, cfg.n_candidates, cfg.candidate_hysteresis))
    trained = [nets["generator"], nets["discriminator"], nets["temporal"]]
    return [p.numel() for net in trained for p in net.parameters()]


# --- (b) fleet scheduling ---------------------------------------------------------------------------------------
class FixedCostActor:
    """AvatarActor's interface, with jobs that only wait `cost` seconds (set through the job's stage field)."""

    def __init__(self, *args):
        self.done = 0

    def run(self, job):
        yield ("progress", "render", 0, 1)
        time.sleep(float(job.stage or 0))
        self.done += 1
        yield ("done", os.devnull)

    def cancel(self, job_id):
        pass

    def loads(self):
        return {}


def fleet_throughput(layout: Layout, actors: int, jobs: int, cost: float) -> float:
    from amg.service.fleet import RayRunner

    runner = RayRunner(layout, AvatarConfig(), RenderConfig(), actors, actor_cpus=0, actor_class=FixedCostActor)
    runner.loads()  # every actor started
    row = BatchRow(0, "none", "stand_in", MotionOptions())
    start = time.perf_counter()
    with ThreadPoolExecutor(actors) as pool:
        list(pool.map(lambda _: runner.render(_with_cost(render_job(row), cost)), range(jobs)))
    elapsed = time.perf_counter() - start
    runner.close()
    return jobs / elapsed


def _with_cost(job, cost: float):
    job.stage = str(cost)
    return job


# --- (c) real renders --------------------------------------------------------------------------------------------
def real_renders(layout: Layout, actors: int, renders: int) -> float:
    from amg.service.batch import render_manifest
    from amg.service.fleet import RayRunner

    speech = load_audio(render_bench.shared_file("audio/musetalk_eng_60s.wav"))[: 20 * 16000]
    rows = []
    for i in range(renders):
        name = f"scale_{i}"
        write_wav(layout.audio_dir(name) / f"{name}.wav", speech, 16000)
        layout.generated_video(name, render_bench.AVATAR).unlink(missing_ok=True)
        rows.append(BatchRow(i, name, render_bench.AVATAR, MotionOptions(seed=i)))
    runner = RayRunner(layout, AvatarConfig(), RenderConfig(), actors)
    runner.loads()
    start = time.perf_counter()
    render_manifest(layout, rows, actors, runner)
    elapsed = time.perf_counter() - start
    runner.close()
    return renders * 20 * 25 / elapsed  # frames per second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--cost", type=float, default=0.5)
    parser.add_argument("--renders", type=int, default=4)
    args = parser.parse_args()
    layout = Layout(render_bench.ROOT)
    render_bench.ensure_avatar(layout, "obama_clip2", {"gan.steps": 20})

    print("(a) data-parallel GAN training, 256 px default generator, CPU ranks (gloo):")
    one, two = (ddp_steps_per_s(layout, n, args.steps) for n in (1, 2))
    print(f"    1 rank: {one:.3f} steps/s; 2 ranks: {two:.3f} steps/s ({two / one:.2f}x; both share 2 cores)")
    sizes = gan_parameter_sizes(layout)
    print(f"    gradient all-reduce of {sum(sizes) / 1e6:.1f} M parameters: {all_reduce_ms(sizes):.1f} ms per step")

    import ray

    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    print(f"(b) fleet scheduling, a SIMULATION: stand-in jobs that wait {args.cost} s (this machine has 2 cores)")
    overhead = 1 / fleet_throughput(layout, 1, args.jobs, 0.0)
    print(f"    dispatch overhead: {overhead * 1000:.1f} ms per job")
    base = fleet_throughput(layout, 1, args.jobs, args.cost)
    for actors in (1, 2, 4, 8):
        rate = base if actors == 1 else fleet_throughput(layout, actors, args.jobs, args.cost)
        print(f"    {actors} actor(s): {rate:.2f} jobs/s = {rate / (base * actors):.2f} of linear")
    ray.shutdown()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"(c) real renders: {args.renders} x 20 s of speech")
    for actors in (1, 2):
        print(f"    {actors} actor(s): {real_renders(layout, actors, args.renders):.1f} frames/s in all")
    ray.shutdown()


if __name__ == "__main__":
    main()
