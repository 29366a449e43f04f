"""/api/verify: does an uploaded video carry AMG's marks (watermark, C2PA manifest, metadata)? As `amg verify`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from amg.core.errors import MediaError
from amg.service.state import ServiceDep
from amg.service.uploads import receive_upload

router = APIRouter()


@router.post("/api/verify", summary="Upload a video (request body): which of AMG's marks does it carry?")
async def verify(request: Request, service: ServiceDep) -> dict:
    from amg.media.verify import verify_video

    upload = service.layout.upload(f"verify_{uuid.uuid4().hex}")
    await receive_upload(request, service.settings.max_video_mb, upload)
    try:
        result = await run_in_threadpool(verify_video, upload)
    except MediaError:
        raise HTTPException(415, "The upload is not a video AMG can decode.") from None
    finally:
        upload.unlink(missing_ok=True)
    findings = result.as_dict()
    findings.pop("path")  # the server's own temporary name says nothing to the client
    return findings
