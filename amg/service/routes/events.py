"""GET /api/events: the web page's one long-lived request, server-sent events of every avatar's card and every job
as they change, so that the page never polls (a training of hours would otherwise cost a request a second).

The stream: `reset` (forget what you know), then `avatar` (a card, as GET /api/avatars lists it) and `job` (as
GET /api/jobs/ID) for each, then `ready`; afterwards an `avatar` or `job` event whenever one changes, and
`avatar-gone` or `job-gone` (data: the name or id, as JSON) when one is deleted. A browser's EventSource
reconnects by itself after a dropped connection and is sent everything again.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import AsyncIterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from amg.service.cards import avatar_card, avatar_names
from amg.service.state import Service, ServiceDep

router = APIRouter()
CHECK_S = 0.5  # how often the service looks for changes (the job store records progress at most this often)
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream
RETRY_MS = 2000  # how long a browser waits before it reconnects


@router.get("/api/events", summary="Server-sent events: every avatar's card and job, then each change")
def events(service: ServiceDep) -> StreamingResponse:
    return StreamingResponse(_stream(service), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


class _Views:
    """What one stream has to say: (kind, key) → the JSON of every avatar's card and every job now. A finished
    job's view is made again only when its record changes: a service keeps thousands of them, and making each
    view twice a second would cost a core."""

    def __init__(self, service: Service):
        self.service = service
        self._finished: dict[str, tuple[tuple, str]] = {}  # job id → (its record's state, its view's JSON)

    def now(self) -> dict[tuple[str, str], str]:
        service = self.service
        views = {("avatar", name): json.dumps(avatar_card(service, name)) for name in avatar_names(service.layout)}
        finished = {}
        for job in service.store.list():
            if job.status in ("queued", "running"):  # its queue position and ETA move without its record
                views["job", job.id] = json.dumps(service.job_view(job))
                continue
            state = (job.status, job.finished, job.error)
            known = self._finished.get(job.id)
            finished[job.id] = known if known and known[0] == state else (state, json.dumps(service.job_view(job)))
            views["job", job.id] = finished[job.id][1]
        self._finished = finished
        return views


def _event(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"


def _changes(before: dict[tuple[str, str], str], now: dict[tuple[str, str], str]) -> str:
    """The events that take a client from `before` to `now` ("" when nothing changed)."""
    changed = [_event(kind, data) for (kind, key), data in now.items() if before.get((kind, key)) != data]
    gone = [_event(f"{kind}-gone", json.dumps(key)) for kind, key in before.keys() - now.keys()]
    return "".join(changed + gone)


async def _stream(service: Service) -> AsyncIterator[str]:
    views = _Views(service)
    sent = await run_in_threadpool(views.now)
    yield f"retry: {RETRY_MS}\n" + _event("reset", "{}") + _changes({}, sent) + _event("ready", "{}")
    quiet_since = time.monotonic()
    while not service.stopping():  # or until the client goes: the response is then cancelled
        await asyncio.sleep(CHECK_S)
        now = await run_in_threadpool(views.now)
        message, sent = _changes(sent, now), now
        if not message and time.monotonic() - quiet_since >= KEEPALIVE_S:
            message = ": keep-alive\n\n"
        if message:
            quiet_since = time.monotonic()
            yield message
