"""`amg serve`: the HTTP API (FastAPI; OpenAPI docs at /docs) and the web page at /.

    GET    /api/avatars                 avatars as the page's cards: state (trained, training with progress,
                                        failed with the reason, not trained), preset, size, a still, the sample
    POST   /api/avatars/{name}          upload a video (request body; ?preset=, &set=KEY=VALUE) → a job training
                                        avatar `name` (a new one, or one left untrained, whose old files the
                                        new video replaces); a video without a face is refused with the reason
    POST   /api/avatars/{name}/resume   train a cancelled or failed avatar again, from its checkpoints
    GET    /api/avatars/{name}/still    a still of its video; .../sample: the latest training sample grid
    DELETE /api/avatars/{name}          delete an avatar: its video, processed data and checkpoints
    GET    /api/events                  server-sent events: every avatar's card and job, then each change
    GET    /api/jobs[?avatar=NAME]      jobs, newest first
    POST   /api/jobs?avatar=NAME        upload speech (request body, any common format) → a render job
    GET    /api/jobs/{id}               status, queue position, progress (per stage too), ETA
    GET    /api/jobs/{id}/video         the result (mp4; HTTP range requests, so a browser can seek)
    GET    /api/jobs/{id}/outputs/NAME  video, enhanced (with --enhance) or speech; .../waveform: speech peaks
    POST   /api/jobs/{id}/cancel        cancel a job and keep its record (a training can then be resumed)
    DELETE /api/jobs/{id}               cancel a job and delete its files
    WS     /api/live?avatar=NAME        live: send speech (binary PCM16 mono 16 kHz chunks, then the text "end");
                                        &framing=source|crop; get {"type": "ready", "width", "height"},
                                        then per frame a binary message: a 4-byte
                                        little-endian header length, the JSON header (index, latency_s,
                                        dropped, jpeg: byte count), the JPEG, the frame's 40 ms as PCM16;
                                        finally {"type": "end", "frames", "dropped"}. One stream per worker.

Safe by default: loopback only unless told otherwise; names and ids validated; uploads limited in size while
they stream in and checked by decoding them (not by their extension); speech limited in duration; with
AMG_API_TOKEN set, every request and WebSocket needs it (`Authorization: Bearer TOKEN`, `X-API-Token`, or
`?token=` for links such as a video's src and for browsers' WebSockets), and the server's log shows no token;
requests that change something and live streams from a web page of another site are refused unless its origin
is allowed (`--allow-origin`); a live stream that sends nothing for `live_idle_s` is closed; one server per
DATAROOT (amg.service.lock). Every error is JSON: {"error": "..."}, never a traceback or a server path. The
OpenAPI page at /docs is served from the swagger-ui-bundle wheel: it works offline (docs/serve.md: the security
model).

Here: the app (its lifespan, the token and origin checks of HTTP requests, the JSON errors); the routes, one
router per resource, in amg.service.routes; what they share (settings, data layout, job store, runner, worker)
in amg.service.state; the checks themselves in amg.service.auth.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from amg.config import AvatarConfig, RenderConfig
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.service.auth import STATE_CHANGING_METHODS, authorized, foreign_origin, refused_origin_message
from amg.service.jobs import JobStore
from amg.service.lock import server_lock
from amg.service.redact import redact_server_log, without_path
from amg.service.routes import avatars, events, jobs, live, page, verify
from amg.service.settings import ServiceSettings
from amg.service.state import Service
from amg.service.worker import PipelineRunner, Runner, Worker

log = logging.getLogger(__name__)


def create_app(
    root: str | Path, settings: ServiceSettings | None = None, runner: Runner | None = None, start_worker: bool = True
) -> FastAPI:
    """The service on DATAROOT `root`; `runner` does the jobs (AMG's pipeline unless given), and without
    `start_worker` they stay queued."""
    layout, settings = Layout(root), settings or ServiceSettings()
    store = JobStore(layout.job_database())
    precision = settings.precision
    runner = runner or PipelineRunner(layout, AvatarConfig(precision=precision), RenderConfig(precision=precision))
    service = Service(layout, settings, store, runner, Worker(store, runner, layout, settings.workers))
    app = FastAPI(
        title="AMG",
        version="1",
        description="Audio-driven talking-person avatars.",
        lifespan=_lifespan(service, start_worker),
        exception_handlers=_ERROR_HANDLERS,
        docs_url=None,
        redoc_url=None,  # FastAPI's own pages load their scripts from a CDN: routes/page.py serves /docs
    )
    app.state.service = service
    app.state.store, app.state.worker = store, service.worker  # for those that drive a running app (tests)
    app.middleware("http")(_check_client)
    for router in (avatars.router, events.router, jobs.router, live.router, page.router, verify.router):
        app.include_router(router)
    return app


def _lifespan(service: Service, start_worker: bool):
    """The app's life: the worker runs while it serves; the job store and runner are closed after."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        redact_server_log()
        if start_worker:
            service.worker.start()
        yield
        service.close()

    return lifespan


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _check_client(request: Request, call_next):
    """Every HTTP request (the API, the page, /docs, the videos) needs the token when there is one, and one that
    changes something must not come from another site's page; the live WebSocket checks both itself, to say why
    it refuses (amg.service.routes.live)."""
    settings = request.app.state.service.settings
    if not authorized(request, settings.token):
        return _error(401, "This service needs its API token (Authorization: Bearer TOKEN).")
    if request.method in STATE_CHANGING_METHODS and (origin := foreign_origin(request, settings.allowed_origins)):
        return _error(403, refused_origin_message(origin))
    return await call_next(request)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return _error(422, f"Invalid request: {problems}")


async def _amg_error(request: Request, exc: AmgError) -> JSONResponse:
    return _error(400, without_path(str(exc), request.app.state.service.layout.root, "DATAROOT"))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unhandled error on %s", request.url.path)
    return _error(500, "Internal error: see the service's log.")


# Every error is JSON, and none shows a traceback or a server path.
_ERROR_HANDLERS = {
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
    AmgError: _amg_error,
    Exception: _internal_error,
}


def _server(app: FastAPI, **config):
    """A uvicorn server of `app` whose shutdown ends the page's event streams, which never end by themselves: a
    server told to stop would wait for them forever (amg.service.routes.events)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, **config))
    app.state.service.stopping = lambda: server.should_exit
    return server


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", log_level: str = "warning") -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of `host` in a background thread; yields its base URL (tests and
    benchmarks talk to it over real sockets)."""
    import threading

    server = _server(app, host=host, port=0, log_level=log_level)
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
    """Serve until interrupted, the only server of DATAROOT `root`; with `ray_address` ("" for a local Ray), jobs
    run on a Ray cluster's actors (amg.service.fleet), `settings.workers` of them."""
    settings = settings or ServiceSettings()
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        log.warning("Serving on %s without AMG_API_TOKEN: anyone who can reach this port can use the service.", host)
    layout = Layout(root)
    with server_lock(layout, f"http://{host}:{port}"):
        runner = None
        if ray_address is not None:
            from amg.service.fleet import RayRunner

            runner = RayRunner(layout, AvatarConfig(), RenderConfig(), settings.workers, ray_address or None)
        _server(create_app(root, settings, runner), host=host, port=port, log_level="info").run()
