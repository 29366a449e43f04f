"""What every route of `amg serve` shares: its settings, data layout, job queue, runner and worker (one `Service`
per app, on `app.state.service`; routes get it with the `ServiceDep` dependency), and the views of jobs and
avatars the routes answer with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Callable

from fastapi import Depends
from starlette.requests import HTTPConnection

from amg.core.layout import Layout
from amg.service.jobs import Job, JobStore
from amg.service.settings import ServiceSettings
from amg.service.worker import Runner, Worker, job_outputs, stage_progress


@dataclass
class Service:
    layout: Layout
    settings: ServiceSettings
    store: JobStore
    runner: Runner
    worker: Worker
    live_streams: int = 0  # open now; at most settings.workers (only the event loop's thread counts them)
    stopping: Callable[[], bool] = lambda: False  # whether the server is shutting down (set by amg.service.app)
    # Avatar name → (its render artifacts' modification times, whether it renders): see is_trained.
    _trained: dict[str, tuple[tuple, bool]] = field(default_factory=dict, repr=False)

    def close(self) -> None:
        self.worker.stop()
        self.store.close()
        self.runner.close()

    def job_view(self, job: Job) -> dict:
        view = job.as_dict() | {"queue_position": self.store.queue_position(job)}
        if job.status in ("queued", "running"):
            view["stages"] = stage_progress(job.kind, job.progress)
        if job.kind == "render":
            view["waveform_url"] = f"/api/jobs/{job.id}/waveform"
        if job.status == "done" and job.kind == "render":
            view["video_url"] = f"/api/jobs/{job.id}/video"
            view["outputs"] = {name: f"/api/jobs/{job.id}/outputs/{name}" for name in job_outputs(self.layout, job)}
        return view

    def is_trained(self, name: str) -> bool:
        """Whether avatar `name` can render (the CLI's answer, amg.stages.avatar_renders); checkpoints are read
        again only when one changed (they are large)."""
        from amg.stages import avatar_renders, render_artifacts

        stamp = tuple(f.stat().st_mtime_ns if f.is_file() else None for f in render_artifacts(self.layout, name))
        cached = self._trained.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, avatar_renders(self.layout, name))
            self._trained[name] = cached
        return cached[1]

    def forget_avatar(self, name: str) -> None:
        """Avatar `name` was deleted: drop what is_trained remembers of it."""
        self._trained.pop(name, None)

    def avatar_view(self, name: str) -> dict:
        """Avatar `name`'s state: trained, training (with its job's progress and stage), failed (its last
        training's reason) or not trained."""
        if self.is_trained(name):
            return {"name": name, "status": "trained"}
        job = self.store.last(name, "train")
        if job is not None and job.status in ("queued", "running"):
            return {"name": name, "status": "training", "progress": job.progress, "job": job.id, "stage": job.stage}
        if job is not None and job.status == "failed":
            return {"name": name, "status": "failed", "error": job.error, "job": job.id}
        return {"name": name, "status": "not trained"}


def service_of(connection: HTTPConnection) -> Service:
    """The app's Service, for an HTTP request or a WebSocket alike."""
    return connection.app.state.service


ServiceDep = Annotated[Service, Depends(service_of)]
