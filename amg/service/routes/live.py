"""WS /api/live: a live stream, speech in and frames out as they are made (the protocol: amg.service.app)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from amg.config import MotionOptions, config_from_dict
from amg.config.render import check_framing
from amg.core.constants import FPS, SAMPLE_RATE
from amg.core.errors import AmgError
from amg.core.layout import validate_name
from amg.service.auth import authorized, foreign_origin, refused_origin_message
from amg.service.settings import ServiceSettings
from amg.service.state import Service, ServiceDep

router = APIRouter()
# The query parameters a stream's motion options come from (the rest: `avatar`, and `token` for browsers).
MOTION_PARAMETERS = ("seed", "blinks", "blink_rate")


@router.websocket("/api/live")
async def live(websocket: WebSocket, service: ServiceDep) -> None:
    """?avatar=NAME[&seed=N][&blinks=natural|off][&blink_rate=R][&framing=source|crop]: the parameters are read
    here, after the handshake, so that a refusal (of a parameter too) is a JSON message and close code 1008, not a
    handshake the browser only reports as failed."""
    await websocket.accept()
    try:
        avatar, options, framing = _stream_request(websocket, service)
    except AmgError as exc:
        await websocket.send_json({"type": "error", "error": str(exc)})
        await websocket.close(code=1008)
        return
    service.live_streams += 1
    try:
        await _stream_live(websocket, service.runner, avatar, options, framing, service.settings)
    finally:
        service.live_streams -= 1


def _stream_request(websocket: WebSocket, service: Service) -> tuple[str, MotionOptions, str | None]:
    """The avatar, motion options and framing of a stream that may start; AmgError saying why it may not."""
    settings = service.settings
    if not authorized(websocket, settings.token):
        raise AmgError("This service needs its API token (?token=TOKEN).")
    if origin := foreign_origin(websocket, settings.allowed_origins):
        raise AmgError(refused_origin_message(origin))
    params = websocket.query_params
    avatar = validate_name(params.get("avatar", ""), "avatar name")
    options = config_from_dict(MotionOptions, {k: params[k] for k in MOTION_PARAMETERS if k in params})
    framing = params.get("framing")
    if framing is not None:
        check_framing("framing", framing)
    if not hasattr(service.runner, "live"):
        raise AmgError("This service does not stream live.")
    if service.live_streams >= settings.workers:
        raise AmgError(f"All {settings.workers} live stream(s) of this service are in use: try again later.")
    if service.avatar_view(avatar)["status"] != "trained":
        raise AmgError(f"Avatar {avatar!r} is not trained (yet).")
    return avatar, options, framing


async def _stream_live(
    websocket: WebSocket, runner, avatar: str, options, framing: str | None, settings: ServiceSettings
) -> None:
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
        session = await run_in_threadpool(runner.live, avatar, on_frame, options, framing)
    except AmgError as exc:
        await websocket.send_json({"type": "error", "error": str(exc)})
        await websocket.close(code=1011)
        return
    width, height = session.frame_size
    ready = {"type": "ready", "size": session.size, "width": width, "height": height, "fps": FPS}
    await websocket.send_json({**ready, "sample_rate": SAMPLE_RATE})
    sender = asyncio.create_task(send_frames())
    received, limit = 0, settings.max_audio_s * SAMPLE_RATE
    error = None
    # Idle: no speech for live_idle_s (text and empty messages keep nothing alive): the slot is freed.
    idle_deadline = loop.time() + settings.live_idle_s
    try:
        while True:
            try:
                message = await asyncio.wait_for(websocket.receive(), max(0.0, idle_deadline - loop.time()))
            except asyncio.TimeoutError:
                error = f"No speech received for {settings.live_idle_s:g} s: the stream is closed to free its slot."
                break
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
            if data:
                idle_deadline = loop.time() + settings.live_idle_s
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
