"""`amg serve`: the HTTP API (FastAPI; OpenAPI docs at /docs) and the web page at /.

    GET    /api/avatars                 avatars: trained, training (with progress) or not trained
    POST   /api/avatars/{name}          upload a video (request body) → a job training avatar `name` (a new one,
                                        or one left untrained, whose old files the new video replaces)
    DELETE /api/avatars/{name}          delete an avatar: its video, processed data and checkpoints
    GET    /api/jobs[?avatar=NAME]      jobs, newest first
    POST   /api/jobs?avatar=NAME        upload speech (request body, any common format) → a render job
    GET    /api/jobs/{id}               status, queue position, progress, ETA
    GET    /api/jobs/{id}/video         the result (mp4; HTTP range requests, so a browser can seek)
    DELETE /api/jobs/{id}               cancel a job and delete its files
    WS     /api/live?avatar=NAME        live: send speech (binary PCM16 mono 16 kHz chunks, then the text "end");
                                        get {"type": "ready"}, then per frame a binary message: a 4-byte
                                        little-endian header length, the JSON header (index, latency_s,
                                        dropped, jpeg: byte count), the JPEG, the frame's 40 ms as PCM16;
                                        finally {"type": "end", "frames", "dropped"}. One stream per worker.

Safe by default: loopback only unless told otherwise; names and ids validated; uploads limited in size while
they stream in and checked by decoding them (not by their extension); speech limited in duration; with
AMG_API_TOKEN set, every request needs it (`Authorization: Bearer TOKEN`, `X-API-Token`, or `?token=` for
links such as a video's src), and the access log shows no token. Every error is JSON: {"error": "..."}, never
a traceback or a server path. The OpenAPI page at /docs is served from the swagger-ui-bundle wheel: it works
offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from fastapi import FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from amg.config import MAX_BLINK_RATE, MotionOptions
from amg.core.errors import AmgError
from amg.core.layout import Layout, validate_name
from amg.service.jobs import Job, JobStore, validate_job_id
from amg.service.redact import redact_access_log, without_path
from amg.service.worker import PipelineRunner, Runner, Worker, delete_folders, delete_job_files

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
CHUNK = 1 << 16


@dataclass
class ServiceSettings:
    max_upload_mb: float = 50.0  # speech uploads
    max_video_mb: float = 500.0  # avatar video uploads
    max_audio_s: float = 600.0  # longest speech a job may render (and a live stream may last)
    max_live_chunk_kb: float = 64.0  # largest audio message of a live stream (2 s of PCM16)
    workers: int = 1  # jobs run at once (one render already uses every core of a small machine)
    token: str | None = field(default_factory=lambda: os.environ.get("AMG_API_TOKEN") or None)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _given_token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-token") or request.query_params.get("token") or ""


async def _receive(request: Request, limit_mb: float, destination: Path) -> Path:
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
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    if size == 0:
        destination.unlink(missing_ok=True)
        raise HTTPException(400, "The upload is empty: send the file as the request body.")
    return destination


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


def _serve_docs_offline(app: FastAPI) -> None:
    """/docs with Swagger UI's scripts and styles from the swagger-ui-bundle wheel instead of a CDN (FastAPI's
    documented self-hosting recipe), so the page works without the internet."""
    import swagger_ui_bundle

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def create_app(
    root: str | Path, settings: ServiceSettings | None = None, runner: Runner | None = None, start_worker: bool = True
) -> FastAPI:
    from amg.config import AvatarConfig, RenderConfig

    settings = settings or ServiceSettings()
    layout = Layout(root)
    store = JobStore(layout.root / "service" / "jobs.sqlite3")
    runner = runner or PipelineRunner(layout, AvatarConfig(), RenderConfig())
    worker = Worker(store, runner, layout, settings.workers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        redact_access_log()
        if start_worker:
            worker.start()
        yield
        worker.stop()
        store.close()
        runner.close()

    app = FastAPI(
        title="AMG",
        version="1",
        description="Audio-driven talking-person avatars.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # FastAPI's own pages load their scripts from a CDN: /docs is served below
    )
    _serve_docs_offline(app)
    app.state.store, app.state.worker, app.state.layout = store, worker, layout

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if settings.token and not hmac.compare_digest(_given_token(request).encode(), settings.token.encode()):
            return _error(401, "This service needs its API token (Authorization: Bearer TOKEN).")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(422, f"Invalid request: {problems}")

    @app.exception_handler(AmgError)
    async def amg_error(request: Request, exc: AmgError):
        return _error(400, without_path(str(exc), layout.root, "DATAROOT"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("Unhandled error on %s", request.url.path)
        return _error(500, "Internal error: see the service's log.")

    def job_view(job: Job) -> dict:
        view = job.as_dict() | {"queue_position": store.queue_position(job)}
        if job.status == "done" and job.kind == "render":
            view["video_url"] = f"/api/jobs/{job.id}/video"
        return view

    def find_job(job_id: str) -> Job:
        job = store.get(validate_job_id(job_id))
        if job is None:
            raise HTTPException(404, f"No job {job_id}.")
        return job

    trained_cache: dict[str, tuple[tuple, bool]] = {}

    def is_trained(name: str) -> bool:
        """Whether avatar `name` can render (the CLI's answer, amg.stages.avatar_renders); checkpoints are read
        again only when one changed (they are large)."""
        from amg.stages import avatar_renders, render_artifacts

        stamp = tuple(f.stat().st_mtime_ns if f.is_file() else None for f in render_artifacts(layout, name))
        cached = trained_cache.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, avatar_renders(layout, name))
            trained_cache[name] = cached
        return cached[1]

    def avatar_view(name: str) -> dict:
        trainings = [j for j in store.list(name) if j.kind == "train" and j.status in ("queued", "running")]
        if is_trained(name):
            return {"name": name, "status": "trained"}
        if trainings:
            job = trainings[0]
            return {"name": name, "status": "training", "progress": job.progress, "job": job.id}
        return {"name": name, "status": "not trained"}

    @app.get("/api/avatars", summary="Avatars: trained, training (with progress) or not trained")
    def list_avatars() -> list[dict]:
        names = set()
        for folder in (layout.root / "input_data" / "video", layout.root / "checkpoints"):
            if folder.is_dir():
                names |= {p.name for p in folder.iterdir() if p.is_dir()}
        return [avatar_view(n) for n in sorted(names)]

    def avatar_folders(name: str) -> tuple[Path, Path]:
        """Everything of avatar `name` on disk: its video folder (with the processed data) and checkpoints."""
        return layout.video_dir(name), layout.checkpoint_dir(name)

    def refuse_if_in_use(name: str) -> None:
        if any(j.status in ("queued", "running") for j in store.list(name)) or name in worker.busy_avatars():
            raise HTTPException(409, f"Avatar {name!r} is in use by a job: wait for it or cancel it first.")

    @app.post("/api/avatars/{name}", status_code=202, summary="Upload a video (request body) and train avatar NAME")
    async def train_avatar(name: str, request: Request) -> dict:
        validate_name(name, "avatar name")
        if is_trained(name):
            raise HTTPException(409, f"Avatar {name!r} exists already (DELETE it first to replace it).")
        refuse_if_in_use(name)
        upload = await _receive(request, settings.max_video_mb, layout.root / "service" / "uploads" / uuid.uuid4().hex)
        try:
            extension = await run_in_threadpool(_video_extension, upload)
            # An avatar left untrained (a cancelled or failed training) starts again from the new video.
            delete_folders(avatar_folders(name))
            folder = layout.video_dir(name)
            folder.mkdir(parents=True)
            upload.replace(folder / f"{name}{extension}")
        finally:
            upload.unlink(missing_ok=True)
        job = store.add("train", name)
        worker.wake()
        return job_view(job)

    @app.delete("/api/avatars/{name}", status_code=204, summary="Delete avatar NAME: video, processed data, models")
    def delete_avatar(name: str) -> Response:
        folders = avatar_folders(validate_name(name, "avatar name"))
        if not any(folder.exists() for folder in folders):
            raise HTTPException(404, f"No avatar {name!r}.")
        refuse_if_in_use(name)
        delete_folders(folders)
        trained_cache.pop(name, None)
        return Response(status_code=204)

    @app.get("/api/jobs", summary="Jobs, newest first")
    def list_jobs(avatar: str | None = None) -> list[dict]:
        return [job_view(j) for j in store.list(None if avatar is None else validate_name(avatar, "avatar name"))]

    @app.post("/api/jobs", status_code=202, summary="Upload speech (request body, any common format) for AVATAR")
    async def add_job(
        avatar: str,
        request: Request,
        seed: int = Query(0, description="sampling seed of head motion and blinks"),
        blinks: Literal["natural", "off"] = Query("natural", description="natural: as often as the person; off: never"),
        blink_rate: float = Query(1.0, ge=0, le=MAX_BLINK_RATE, description="× the avatar's own blink rate"),
    ) -> dict:
        from amg.media import load_audio, write_wav
        from amg.media.audio import AudioTooLong

        if avatar_view(validate_name(avatar, "avatar name"))["status"] != "trained":
            raise HTTPException(409, f"Avatar {avatar!r} is not trained (yet).")
        job_id = uuid.uuid4().hex
        upload = await _receive(request, settings.max_upload_mb, layout.root / "service" / "uploads" / job_id)
        try:
            # Bounded by duration while it decodes: a small compressed upload may hold hours of audio.
            samples = await run_in_threadpool(load_audio, upload, 16000, settings.max_audio_s)
        except AudioTooLong:
            raise HTTPException(
                413, f"The speech lasts longer than the limit of {settings.max_audio_s:.0f} s."
            ) from None
        except AmgError as exc:
            message = without_path(str(exc), upload, "the upload")
            raise HTTPException(415, f"The upload is not audio AMG can decode: {message}") from None
        finally:
            upload.unlink(missing_ok=True)
        if len(samples) < 0.2 * 16000:
            raise HTTPException(422, "The speech is shorter than 0.2 s.")
        audio = f"job-{job_id}"
        write_wav(layout.audio_dir(audio) / f"{audio}.wav", samples, 16000)  # normalised on the way in
        job = store.add("render", avatar, audio, job_id, {"seed": seed, "blinks": blinks, "blink_rate": blink_rate})
        worker.wake()
        return job_view(job)

    @app.get("/api/jobs/{job_id}", summary="A job's status, queue position, progress and ETA")
    def get_job(job_id: str) -> dict:
        return job_view(find_job(job_id))

    @app.get("/api/jobs/{job_id}/video", summary="The rendered video (range requests supported)")
    def get_video(job_id: str) -> FileResponse:
        job = find_job(job_id)
        if job.kind != "render" or job.status != "done":
            raise HTTPException(409, f"Job {job_id} has no video (status: {job.status}).")
        path = layout.generated_video(job.audio, job.avatar)
        if not path.is_file():
            raise HTTPException(410, f"The video of job {job_id} is gone.")
        return FileResponse(path, media_type="video/mp4", filename=f"{job.avatar}_{job_id[:8]}.mp4")

    @app.delete("/api/jobs/{job_id}", status_code=204, summary="Cancel a job and delete its files")
    def delete_job(job_id: str) -> Response:
        job = find_job(job_id)
        store.cancel(job.id)  # a running job stops at its next progress report
        store.delete(job.id)
        delete_job_files(layout, job)
        return Response(status_code=204)

    live_streams = {"active": 0}

    @app.websocket("/api/live")
    async def live(
        websocket: WebSocket,
        avatar: str,
        token: str = "",
        seed: int = 0,
        blinks: Literal["natural", "off"] = "natural",
        blink_rate: float = Query(1.0, ge=0, le=MAX_BLINK_RATE),
    ) -> None:
        await websocket.accept()
        given = token or websocket.headers.get("x-api-token", "")
        refusal = None
        if settings.token and not hmac.compare_digest(given.encode(), settings.token.encode()):
            refusal = "This service needs its API token (?token=TOKEN)."
        elif not hasattr(runner, "live"):
            refusal = "This service does not stream live."
        elif live_streams["active"] >= settings.workers:
            refusal = f"All {settings.workers} live stream(s) of this service are in use: try again later."
        else:
            try:
                if avatar_view(validate_name(avatar, "avatar name"))["status"] != "trained":
                    refusal = f"Avatar {avatar!r} is not trained (yet)."
            except HTTPException as exc:
                refusal = exc.detail
        if refusal:
            await websocket.send_json({"type": "error", "error": refusal})
            await websocket.close(code=1008)
            return
        live_streams["active"] += 1
        try:
            await _stream_live(
                websocket, runner, avatar, MotionOptions(seed=seed, blinks=blinks, blink_rate=blink_rate), settings
            )
        finally:
            live_streams["active"] -= 1

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


async def _stream_live(websocket: WebSocket, runner, avatar: str, options, settings: ServiceSettings) -> None:
    """One live stream: speech messages in, frames out as the session makes them (see the module docstring)."""
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
    await websocket.send_json({"type": "ready", "size": session.size, "fps": 25, "sample_rate": 16000})
    sender = asyncio.create_task(send_frames())
    received, limit = 0, settings.max_audio_s * 16000
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


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", log_level: str = "warning") -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of `host` in a background thread; yields its base URL (tests and
    benchmarks talk to it over real sockets)."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def serve(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServiceSettings | None = None,
    ray_address: str | None = None,
) -> None:
    """Serve until interrupted; with `ray_address` ("" for a local Ray), jobs run on a Ray cluster's actors
    (amg.service.fleet), `settings.workers` of them."""
    import uvicorn

    settings = settings or ServiceSettings()
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        log.warning("Serving on %s without AMG_API_TOKEN: anyone who can reach this port can use the service.", host)
    runner = None
    if ray_address is not None:
        from amg.config import AvatarConfig, RenderConfig
        from amg.service.fleet import RayRunner

        runner = RayRunner(Layout(root), AvatarConfig(), RenderConfig(), settings.workers, ray_address or None)
    uvicorn.run(create_app(root, settings, runner), host=host, port=port, log_level="info")
