"""/api/avatars: list avatars, train one from an uploaded video, delete one."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from amg.core.layout import Layout, validate_name
from amg.service.state import Service, ServiceDep
from amg.service.uploads import receive_upload
from amg.service.worker import delete_folders

router = APIRouter()

# Containers PyAV reports → the extension the data layout stores the avatar video under.
_VIDEO_EXTENSIONS = {"mov": ".mp4", "mp4": ".mp4", "matroska": ".mkv", "webm": ".webm", "avi": ".avi", "mpeg": ".mpg"}


def _video_extension(path: Path) -> str:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise HTTPException(415, "The upload has no video stream.")
            names = container.format.name.split(",")
    except av.FFmpegError:
        raise HTTPException(415, "The upload is not a video AMG can decode.") from None
    return next((_VIDEO_EXTENSIONS[n] for n in names if n in _VIDEO_EXTENSIONS), ".mkv")


def _avatar_folders(layout: Layout, name: str) -> tuple[Path, Path]:
    """Everything of avatar `name` on disk: its video folder (with the processed data) and checkpoints."""
    return layout.video_dir(name), layout.checkpoint_dir(name)


def _refuse_if_in_use(service: Service, name: str) -> None:
    has_open_jobs = any(j.status in ("queued", "running") for j in service.store.list(name))
    if has_open_jobs or name in service.worker.busy_avatars():
        raise HTTPException(409, f"Avatar {name!r} is in use by a job: wait for it or cancel it first.")


@router.get("/api/avatars", summary="Avatars: trained, training (with progress) or not trained")
def list_avatars(service: ServiceDep) -> list[dict]:
    names = set()
    for folder in (service.layout.videos_dir(), service.layout.checkpoints_dir()):
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if p.is_dir()}
    return [service.avatar_view(n) for n in sorted(names)]


@router.post("/api/avatars/{name}", status_code=202, summary="Upload a video (request body) and train avatar NAME")
async def train_avatar(name: str, request: Request, service: ServiceDep) -> dict:
    validate_name(name, "avatar name")
    if service.is_trained(name):
        raise HTTPException(409, f"Avatar {name!r} exists already (DELETE it first to replace it).")
    _refuse_if_in_use(service, name)
    layout = service.layout
    upload = await receive_upload(request, service.settings.max_video_mb, layout.upload(uuid.uuid4().hex))
    try:
        extension = await run_in_threadpool(_video_extension, upload)
        # An avatar left untrained (a cancelled or failed training) starts again from the new video.
        delete_folders(_avatar_folders(layout, name))
        folder = layout.video_dir(name)
        folder.mkdir(parents=True)
        upload.replace(folder / f"{name}{extension}")
    finally:
        upload.unlink(missing_ok=True)
    job = service.store.add("train", name)
    service.worker.wake()
    return service.job_view(job)


@router.delete("/api/avatars/{name}", status_code=204, summary="Delete avatar NAME: video, processed data, models")
def delete_avatar(name: str, service: ServiceDep) -> Response:
    folders = _avatar_folders(service.layout, validate_name(name, "avatar name"))
    if not any(folder.exists() or folder.is_symlink() for folder in folders):
        raise HTTPException(404, f"No avatar {name!r}.")
    _refuse_if_in_use(service, name)
    delete_folders(folders)
    service.forget_avatar(name)
    return Response(status_code=204)
