"""WS /api/live: a live stream, speech in and frames out as they are made (the protocol: amg.service.app)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Literal

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from amg.config import MAX_BLINK_RATE, MotionOptions
from amg.core.constants import FPS, SAMPLE_RATE
from amg.core.errors import AmgError
from amg.core.layout import validate_name
from amg.service.auth import authorized
from amg.service.state import Service, ServiceDep, ServiceSettings

router = APIRouter()


@router.websocket("/api/live")
async def live(
    websocket: WebSocket,
    service: ServiceDep,
    avatar: str,
    seed: int = 0,
    blinks: Literal["natural", "off"] = "natural",
    blink_rate: float = Query(1.0, ge=0, le=MAX_BLINK_RATE),
) -> None:
    await websocket.accept()  # first, so that a refusal can say why
    refusal = _refusal(websocket, service, avatar)
    if refusal:
        await websocket.send_json({"type": "error", "error": refusal})
        await websocket.close(code=1008)
        return
    service.live_streams += 1
    try:
        options = MotionOptions(seed=seed, blinks=blinks, blink_rate=blink_rate)
        await _stream_live(websocket, service.runner, avatar, options, service.settings)
    finally:
        service.live_streams -= 1


def _refusal(websocket: WebSocket, service: Service, avatar: str) -> str | None:
    """Why this stream may not start, or None if it may."""
    settings = service.settings
    if not authorized(websocket, settings.token):
        return "This service needs its API token (?token=TOKEN)."
    if not hasattr(service.runner, "live"):
        return "This service does not stream live."
    if service.live_streams >= settings.workers:
        return f"All {settings.workers} live stream(s) of this service are in use: try again later."
    try:
        if service.avatar_view(validate_name(avatar, "avatar name"))["status"] != "trained":
            return f"Avatar {avatar!r} is not trained (yet)."
    except AmgError as exc:  # an invalid name
        return str(exc)
    return None


async def _stream_live(websocket: WebSocket, runner, avatar: str, options, settings: ServiceSettings) -> None:
    """One live stream: speech messages in, frames out as the session makes them (see amg.service.app)."""
    import cv2
    import numpy as np

    loop = asyncio.get_running_loop()
    frames: asyncio.Queue = asyncio.Queue()

    def on_frame(frame) -> None:  # the generator's thread: encode here, send from the event loop
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
        head = json.dumps(
            {"index": frame.index, "latency_s": round(frame.latency_s, 3), "dropped": frame.dropped, "jpeg": len(jpeg)}
        ).encode()
        sound = (np.clip(frame.audio, -1, 1) * 32767).astype("<i2").tobytes()
        loop.call_soon_threadsafe(frames.put_nowait, len(head).to_bytes(4, "little") + head + jpeg.tobytes() + sound)

    async def send_frames() -> None:
        while (message := await frames.get()) is not None:
            await websocket.send_bytes(message)

    try:
        session = await run_in_threadpool(runner.live, avatar, on_frame, options)
    except AmgError as exc:
        await websocket.send_json({"type": "error", "error": str(exc)})
        await websocket.close(code=1011)
        return
    await websocket.send_json({"type": "ready", "size": session.size, "fps": FPS, "sample_rate": SAMPLE_RATE})
    sender = asyncio.create_task(send_frames())
    received, limit = 0, settings.max_audio_s * SAMPLE_RATE
    error = None
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                if message["text"].strip() == "end":
                    break
                continue
            data = message.get("bytes") or b""
            if len(data) > settings.max_live_chunk_kb * 1024 or len(data) % 2:
                error = f"An audio message must be PCM16 of at most {settings.max_live_chunk_kb:g} KB."
                break
            received += len(data) // 2
            if received > limit:
                error = f"The stream has passed the limit of {settings.max_audio_s:.0f} s."
                break
            await run_in_threadpool(session.push, np.frombuffer(data, "<i2").astype(np.float32) / 32768)
    except WebSocketDisconnect:
        pass
    await run_in_threadpool(session.finish)
    await frames.put(None)
    with contextlib.suppress(Exception):  # the client may have gone
        await sender
        if error:
            await websocket.send_json({"type": "error", "error": error})
        await websocket.send_json({"type": "end", "frames": session.frames.done, "dropped": session.dropped})
        await websocket.close()
