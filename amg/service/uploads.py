"""Uploads (a request's body) streamed to disk, bounded in size while they stream in."""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect


async def receive_upload(request: Request, limit_mb: float, destination: Path) -> Path:
    """Stream the request body to `destination`, refusing it as soon as it passes `limit_mb` (413)."""
    limit = int(limit_mb * 1024 * 1024)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"Upload too large: {int(declared)} bytes, the limit is {limit} bytes.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with open(destination, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"Upload too large: more than the limit of {limit} bytes.")
                out.write(chunk)
    except ClientDisconnect:  # a dropped upload: nobody to answer, and nothing went wrong here
        destination.unlink(missing_ok=True)
        raise HTTPException(400, "The upload stopped before its end (the client disconnected).") from None
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    if size == 0:
        destination.unlink(missing_ok=True)
        raise HTTPException(400, "The upload is empty: send the file as the request body.")
    return destination
