"""/api/avatars: list avatars (each as the page's card), train one from an uploaded video, resume a training,
a still of each and the latest sample of its training, delete one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from amg.core.errors import AmgError
from amg.core.layout import Layout, validate_name
from amg.service.cards import avatar_card, avatar_names, latest_sample, still_jpeg
from amg.service.state import Service, ServiceDep
from amg.service.uploads import receive_upload
from amg.service.worker import delete_folders, training_config

router = APIRouter()
Preset = Literal["fast", "default", "quality"]  # amg.config.PRESETS
GOOD_VIDEO_S = 180  # the original system asked for at least 3 minutes of talking
FACE_CHECK_FRAMES = 10  # an upload is checked for a face on its first seconds, one frame a second

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


def _check_video(path: Path, name: str) -> list[str]:
    """Refuse a video without a usable face now (422, with the reason preprocessing would give hours later in
    the queue); return warnings about what is accepted but will make a poorer avatar."""
    import itertools

    from amg.config import PreprocessConfig
    from amg.media import iter_frames, probe_video
    from amg.tracking.scan import check_faces, scan_faces

    frames = itertools.islice(iter_frames(path, fps=1), FACE_CHECK_FRAMES)
    try:
        check_faces(scan_faces(frames, every=1), PreprocessConfig().min_face_fraction, name)
    except AmgError as exc:
        raise HTTPException(422, str(exc)) from None
    seconds = probe_video(path).duration
    if seconds < GOOD_VIDEO_S:
        return [f"The video lasts {seconds:.0f} s: at least 3 minutes of talking make a good avatar."]
    return []


def _training_options(preset: str, overrides: list[str]) -> dict:
    """A training job's options from the query (`set`: KEY=VALUE, as `amg train --set`), checked now: a bad key
    is refused before a large upload, not after it has waited in the queue."""
    pairs = {}
    for pair in overrides:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise HTTPException(422, f"set expects KEY=VALUE, got {pair!r}.")
        pairs[key.strip()] = value.strip()
    options = {"preset": preset, "set": pairs}
    training_config(options)  # AmgError (400) for an unknown key or a bad value
    return options


def _queue_training(service: Service, name: str, options: dict) -> dict:
    job = service.store.add("train", name, options=options)
    service.worker.wake()
    return service.job_view(job)


def _avatar_folders(layout: Layout, name: str) -> tuple[Path, Path]:
    """Everything of avatar `name` on disk: its video folder (with the processed data) and checkpoints."""
    return layout.video_dir(name), layout.checkpoint_dir(name)


def _refuse_if_in_use(service: Service, name: str) -> None:
    has_open_jobs = any(j.status in ("queued", "running") for j in service.store.list(name))
    if has_open_jobs or name in service.worker.busy_avatars():
        raise HTTPException(409, f"Avatar {name!r} is in use by a job: wait for it or cancel it first.")


@router.get("/api/avatars", summary="Avatars: state (trained, training with progress, failed, not trained), details")
def list_avatars(service: ServiceDep) -> list[dict]:
    return [avatar_card(service, n) for n in avatar_names(service.layout)]


@router.post("/api/avatars/{name}", status_code=202, summary="Upload a video (request body) and train avatar NAME")
async def train_avatar(
    name: str,
    request: Request,
    service: ServiceDep,
    preset: Preset = Query("default", description="fast (a demo, minutes), default, quality (a GPU overnight)"),
    overrides: list[str] = Query([], alias="set", description="KEY=VALUE, as `amg train --set` (repeatable)"),
) -> dict:
    validate_name(name, "avatar name")
    options = _training_options(preset, overrides)
    if service.is_trained(name):
        raise HTTPException(409, f"Avatar {name!r} exists already (DELETE it first to replace it).")
    _refuse_if_in_use(service, name)
    layout = service.layout
    upload = await receive_upload(request, service.settings.max_video_mb, layout.upload(uuid.uuid4().hex))
    try:
        extension = await run_in_threadpool(_video_extension, upload)
        warnings = await run_in_threadpool(_check_video, upload, name)
        # An avatar left untrained (a cancelled or failed training) starts again from the new video.
        delete_folders(_avatar_folders(layout, name))
        folder = layout.video_dir(name)
        folder.mkdir(parents=True)
        upload.replace(folder / f"{name}{extension}")
    finally:
        upload.unlink(missing_ok=True)
    return _queue_training(service, name, options) | {"warnings": warnings}


@router.post("/api/avatars/{name}/resume", status_code=202, summary="Train avatar NAME again from its video")
def resume_training(
    name: str,
    service: ServiceDep,
    preset: Preset | None = Query(None, description="unless given, the preset of its last training"),
    overrides: list[str] = Query([], alias="set", description="KEY=VALUE, as `amg train --set` (repeatable)"),
) -> dict:
    """Resume a cancelled or failed training (from the checkpoints it left; what was finished is kept): with the
    options of the avatar's last training unless the query gives others."""
    layout = service.layout
    if not layout.video_dir(validate_name(name, "avatar name")).is_dir():
        raise HTTPException(404, f"No avatar {name!r}: upload its video first.")
    if service.is_trained(name):
        raise HTTPException(409, f"Avatar {name!r} is trained already.")
    _refuse_if_in_use(service, name)
    last = service.store.last(name, "train")
    if preset is None and not overrides and last is not None:
        options = json.loads(last.options)
    else:
        options = _training_options(preset or "default", overrides)
    return _queue_training(service, name, options)


@router.get("/api/avatars/{name}/still", summary="A still of avatar NAME's video (JPEG)")
async def get_still(name: str, service: ServiceDep) -> Response:
    try:
        video = service.layout.video_source(validate_name(name, "avatar name"))
    except AmgError:
        raise HTTPException(404, f"Avatar {name!r} has no video.") from None
    jpeg = await run_in_threadpool(still_jpeg, video)
    # The card's URL names the video's version (?v=): a new video is a new URL, so the browser may keep this one.
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/api/avatars/{name}/sample", summary="The latest sample grid of avatar NAME's image GAN training")
def get_sample(name: str, service: ServiceDep) -> FileResponse:
    sample = latest_sample(service.layout, validate_name(name, "avatar name"))
    if sample is None:
        raise HTTPException(404, f"Avatar {name!r} has no training sample yet.")
    return FileResponse(sample, media_type="image/jpeg")


@router.delete("/api/avatars/{name}", status_code=204, summary="Delete avatar NAME: video, processed data, models")
def delete_avatar(name: str, service: ServiceDep) -> Response:
    folders = _avatar_folders(service.layout, validate_name(name, "avatar name"))
    if not any(folder.exists() or folder.is_symlink() for folder in folders):
        raise HTTPException(404, f"No avatar {name!r}.")
    _refuse_if_in_use(service, name)
    delete_folders(folders)
    service.forget_avatar(name)
    return Response(status_code=204)
