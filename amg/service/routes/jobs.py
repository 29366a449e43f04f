"""/api/jobs: render jobs from uploaded speech, their status, videos and other outputs, cancelling them."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from amg.config import LABEL, MAX_BLINK_RATE, MAX_LABEL_CHARS
from amg.core.constants import SAMPLE_RATE
from amg.core.dataclass_io import MAX_INT
from amg.core.errors import AmgError
from amg.core.layout import validate_name
from amg.service.jobs import Job, validate_job_id
from amg.service.redact import without_path
from amg.service.state import Service, ServiceDep
from amg.service.uploads import receive_upload
from amg.service.worker import delete_job_files, render_outputs, uploaded_speech

router = APIRouter()
MIN_SPEECH_S = 0.2
MAX_WAVEFORM_BINS = 4000


def _find_job(service: Service, job_id: str) -> Job:
    job = service.store.get(validate_job_id(job_id))
    if job is None:
        raise HTTPException(404, f"No job {job_id}.")
    return job


@router.get("/api/jobs", summary="Jobs, newest first")
def list_jobs(service: ServiceDep, avatar: str | None = None) -> list[dict]:
    jobs = service.store.list(None if avatar is None else validate_name(avatar, "avatar name"))
    return [service.job_view(j) for j in jobs]


@router.post("/api/jobs", status_code=202, summary="Upload speech (request body, any common format) for AVATAR")
async def add_job(
    avatar: str,
    request: Request,
    service: ServiceDep,
    seed: int = Query(0, ge=0, le=MAX_INT, description="sampling seed of head motion and blinks"),
    blinks: Literal["natural", "off"] = Query("natural", description="natural: as often as the person; off: never"),
    blink_rate: float = Query(1.0, ge=0, le=MAX_BLINK_RATE, description="× the avatar's own blink rate"),
    label: str = Query(
        LABEL,
        max_length=MAX_LABEL_CHARS,
        description="the visible label on every frame; empty: none (still watermarked)",
    ),
    framing: Literal["source", "crop"] = Query(
        "source", description="source: the avatar video's own frame size; crop: the generator's square crop"
    ),
) -> dict:
    from amg.media import load_audio, write_wav
    from amg.media.audio import AudioTooLong

    if service.avatar_view(validate_name(avatar, "avatar name"))["status"] != "trained":
        raise HTTPException(409, f"Avatar {avatar!r} is not trained (yet).")
    settings, layout = service.settings, service.layout
    job_id = uuid.uuid4().hex
    upload = await receive_upload(request, settings.max_upload_mb, layout.upload(job_id))
    try:
        # Bounded by duration while it decodes: a small compressed upload may hold hours of audio.
        samples = await run_in_threadpool(load_audio, upload, SAMPLE_RATE, settings.max_audio_s)
    except AudioTooLong:
        raise HTTPException(413, f"The speech lasts longer than the limit of {settings.max_audio_s:.0f} s.") from None
    except AmgError as exc:
        message = without_path(str(exc), upload, "the upload")
        raise HTTPException(415, f"The upload is not audio AMG can decode: {message}") from None
    finally:
        upload.unlink(missing_ok=True)
    if len(samples) < MIN_SPEECH_S * SAMPLE_RATE:
        raise HTTPException(422, f"The speech is shorter than {MIN_SPEECH_S:g} s.")
    audio = f"job-{job_id}"
    write_wav(uploaded_speech(layout, audio), samples, SAMPLE_RATE)  # normalised on the way in
    if not label.isprintable():
        raise HTTPException(422, "The label must be printable text on one line.")
    options = {"seed": seed, "blinks": blinks, "blink_rate": blink_rate, "label": label, "framing": framing}
    job = service.store.add("render", avatar, audio, job_id, options)
    service.worker.wake()
    return service.job_view(job)


@router.get("/api/jobs/{job_id}", summary="A job's status, queue position, progress and ETA")
def get_job(job_id: str, service: ServiceDep) -> dict:
    return service.job_view(_find_job(service, job_id))


@router.get("/api/jobs/{job_id}/video", summary="The rendered video (range requests supported)")
def get_video(job_id: str, service: ServiceDep) -> FileResponse:
    job = _find_job(service, job_id)
    if job.kind != "render" or job.status != "done":
        raise HTTPException(409, f"Job {job_id} has no video (status: {job.status}).")
    path = service.layout.generated_video(job.audio, job.avatar)
    if not path.is_file():
        raise HTTPException(410, f"The video of job {job_id} is gone.")
    return FileResponse(path, media_type="video/mp4", filename=f"{job.avatar}_{job_id[:8]}.mp4")


@router.delete("/api/jobs/{job_id}", status_code=204, summary="Cancel a job and delete its files")
def delete_job(job_id: str, service: ServiceDep) -> Response:
    job = _find_job(service, job_id)
    service.store.cancel(job.id)  # a running job stops at its next progress report
    service.store.delete(job.id)
    delete_job_files(service.layout, job)
    return Response(status_code=204)


@router.post("/api/jobs/{job_id}/cancel", summary="Cancel a job and keep its record (a training can be resumed)")
def cancel_job(job_id: str, service: ServiceDep) -> dict:
    job = _find_job(service, job_id)
    if job.status in ("queued", "running"):
        service.store.cancel(job.id)  # a running job stops at its next progress report
        if job.kind == "render":
            delete_job_files(service.layout, job)
    return service.job_view(_find_job(service, job_id))


@router.get("/api/jobs/{job_id}/outputs/{output}", summary="A render's output: video, enhanced or speech")
def get_output(job_id: str, output: Literal["video", "enhanced", "speech"], service: ServiceDep) -> FileResponse:
    job = _find_job(service, job_id)
    if job.kind != "render":
        raise HTTPException(409, f"Job {job_id} is a training: it has no outputs.")
    path = render_outputs(service.layout, job)[output]
    if output != "speech" and job.status != "done":
        raise HTTPException(409, f"Job {job_id} has no {output} (status: {job.status}).")
    if not path.is_file():
        raise HTTPException(404, f"Job {job_id} has no {output}.")
    media_type = "audio/wav" if output == "speech" else "video/mp4"
    return FileResponse(path, media_type=media_type, filename=f"{job.avatar}_{job_id[:8]}_{output}{path.suffix}")


@router.get("/api/jobs/{job_id}/waveform", summary="A render's speech as peaks to draw: [min, max] per bin")
def get_waveform(job_id: str, service: ServiceDep, bins: int = Query(600, ge=1, le=MAX_WAVEFORM_BINS)) -> dict:
    """The page draws the speech beside its video from these (a few KB) instead of fetching the WAV (up to 19 MB
    for the longest speech)."""
    from amg.media import load_audio

    job = _find_job(service, job_id)
    path = render_outputs(service.layout, job)["speech"] if job.kind == "render" else None
    if path is None or not path.is_file():
        raise HTTPException(404, f"Job {job_id} has no speech.")
    samples = load_audio(path, SAMPLE_RATE)
    return {"duration_s": len(samples) / SAMPLE_RATE, "peaks": _waveform_peaks(samples, bins)}


def _waveform_peaks(samples, bins: int) -> list[list[float]]:
    """[min, max] of each of `bins` equal spans of `samples` (fewer when there are fewer samples), rounded to
    what a drawing can show."""
    import numpy as np

    spans = np.array_split(samples, min(bins, max(len(samples), 1)))
    return [[round(float(s.min(initial=0)), 3), round(float(s.max(initial=0)), 3)] for s in spans]
