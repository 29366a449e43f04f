"""`amg serve --ray` and `amg batch --ray`: render and training jobs on a Ray cluster.

The HTTP API, the SQLite job records and the worker threads stay as they are (amg.service.worker); only the
Runner they call changes: `RayRunner` hands each job to one of a pool of Ray actors (`AvatarActor`), each a
PipelineRunner that keeps the generators of the avatars it has rendered loaded across jobs. A job goes to a free
actor that already holds its avatar, else to the free actor holding fewest. The actor streams the job's progress
back (a Ray streaming generator); the worker's progress sink sees it as if the job ran here, so progress reaches
the job record and a cancelled job is stopped (the actor is told, and stops at its next progress report).

Faults: an actor that dies (its process or its machine) is restarted by Ray, and the job runs again on the pool,
at most `MAX_ATTEMPTS` times in all; outputs appear atomically at their final paths, so a killed render leaves
no half-written file and a retried one replaces nothing but its own result.

Every actor reads and writes DATAROOT by its path: on a cluster of several machines, DATAROOT must be on storage
all of them mount at the same path (NFS, say).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path

from amg.config import AvatarConfig, RenderConfig, config_from_dict
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.progress import report, reporting_to
from amg.service.jobs import Job
from amg.service.worker import Cancelled, PipelineRunner

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # runs of one job when actors die under it
# How long a job waits for Ray to restart the actor that died under it: a new process that imports PyTorch takes
# seconds, tens of them on a busy machine; a call meanwhile fails at once ("the actor is restarting").
RESTART_WAIT_S = 180.0
PROGRESS_INTERVAL_S = 0.2  # an actor sends a job's progress at most this often


class AvatarActor:
    """One Ray worker's renderer (made a Ray actor by RayRunner): a PipelineRunner, whose loaded generators
    stay loaded between jobs, and the jobs cancelled while they run."""

    def __init__(self, root: str, avatar_cfg: dict, render_cfg: dict):
        cfg = config_from_dict(AvatarConfig, avatar_cfg)
        self.runner = PipelineRunner(Layout(root), cfg, config_from_dict(RenderConfig, render_cfg))
        self.cancelled: set[str] = set()

    def run(self, job: Job):
        """Do `job`, yielding ("progress", stage, done, total) as it goes, then ("done", path or None),
        ("cancelled",) or ("failed", message)."""
        items: queue.Queue = queue.Queue()
        last = [0.0]

        def sink(stage: str, done: int, total: int) -> None:
            if job.id in self.cancelled:
                raise Cancelled()
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S or done >= total:
                last[0] = now
                items.put(("progress", stage, done, total))

        def work() -> None:
            try:
                with reporting_to(sink):
                    result = self.runner.render(job) if job.kind == "render" else self.runner.train(job)
                items.put(("done", None if result is None else str(result)))
            except Cancelled:
                items.put(("cancelled",))
            except Exception as exc:  # the driver records the message; the actor lives on
                log.exception("Job %s failed", job.id)
                items.put(("failed", str(exc) or type(exc).__name__))

        threading.Thread(target=work, name=f"amg-job-{job.id}", daemon=True).start()
        while (item := items.get())[0] == "progress":
            yield item
        self.cancelled.discard(job.id)
        yield item

    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)

    def loads(self) -> dict[str, int]:
        """How often each avatar's generator was loaded by this actor."""
        return dict(self.runner.loads)


class ActorPool:
    """The actors and which avatars each holds; `acquire` waits for a free one, preferring the avatar's."""

    def __init__(self, actors: list):
        self.actors = actors
        self.holds: list[set[str]] = [set() for _ in actors]
        self.free = set(range(len(actors)))
        self.running: dict[str, int] = {}  # job id → actor index
        self.changed = threading.Condition()

    def acquire(self, job: Job) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.free)
            holding = [i for i in self.free if job.avatar in self.holds[i]]
            index = min(holding or self.free, key=lambda i: (len(self.holds[i]), i))
            self.free.discard(index)
            self.holds[index].add(job.avatar)
            self.running[job.id] = index
            return index

    def release(self, index: int, job: Job, died: bool = False) -> None:
        with self.changed:
            if died:  # restarted by Ray: nothing is loaded any more
                self.holds[index].clear()
            self.running.pop(job.id, None)
            self.free.add(index)
            self.changed.notify()


class RayRunner:
    """A Runner (amg.service.worker) that runs every job on a pool of `actors` Ray actors; `address`: a Ray
    cluster's ("auto" for the one this machine belongs to), else a local Ray is started."""

    def __init__(
        self,
        layout: Layout,
        avatar_cfg: AvatarConfig,
        render_cfg: RenderConfig,
        actors: int,
        address: str | None = None,
        actor_cpus: float = 1.0,
        actor_class: type = AvatarActor,
    ):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        # `actor_class`: another class with AvatarActor's methods (benchmarks/scale.py's fixed-cost stand-in).
        remote = ray.remote(max_restarts=MAX_ATTEMPTS, max_concurrency=2, num_cpus=actor_cpus)(actor_class)
        args = (str(layout.root.resolve()), asdict(avatar_cfg), asdict(render_cfg))
        self.pool = ActorPool([remote.remote(*args) for _ in range(actors)])

    def close(self) -> None:
        """End the actors (their cluster's CPUs are free for others)."""
        for actor in self.pool.actors:
            self.ray.kill(actor, no_restart=True)

    def render(self, job: Job) -> Path:
        return Path(self._run(job))

    def train(self, job: Job) -> None:
        self._run(job)

    def loads(self) -> list[dict[str, int]]:
        """Each actor's generator loads per avatar (since its last restart)."""
        return self.ray.get([actor.loads.remote() for actor in self.pool.actors])

    def _run(self, job: Job) -> str | None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            index = self.pool.acquire(job)
            died = False
            try:
                return self._follow(self.pool.actors[index], job)
            except self.ray.exceptions.RayActorError as exc:
                died = True
                log.warning("Job %s: its Ray worker died (attempt %d of %d): %s", job.id, attempt, MAX_ATTEMPTS, exc)
                self._await_restart(self.pool.actors[index])
            finally:
                self.pool.release(index, job, died)
        raise AmgError(f"The job's Ray workers died {MAX_ATTEMPTS} times: giving up.")

    def _await_restart(self, actor) -> None:
        """Wait until `actor`, which died, answers again (restarted by Ray), or RESTART_WAIT_S has passed, or it
        is dead for good (out of restarts): a retry sent meanwhile would fail at once and use up the attempts."""
        deadline = time.monotonic() + RESTART_WAIT_S
        while time.monotonic() < deadline:
            try:
                self.ray.get(actor.loads.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return
            except self.ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                return

    def _follow(self, actor, job: Job) -> str | None:
        """Relay the job's progress from `actor` until it ends. A job cancelled here is cancelled there, and the
        actor is waited for until it has stopped (it is not free before)."""
        cancelled = False
        for ref in actor.run.remote(job):
            kind, *rest = self.ray.get(ref)
            if kind == "progress" and not cancelled:
                try:
                    report(*rest)  # the worker's sink: raises Cancelled once the job is deleted
                except Cancelled:
                    cancelled = True
                    actor.cancel.remote(job.id)
            elif kind == "done" and not cancelled:
                return rest[0]
            elif kind == "failed":
                raise AmgError(rest[0])
            elif kind != "progress":
                raise Cancelled()
        raise AmgError("The Ray worker ended the job without a result.")
