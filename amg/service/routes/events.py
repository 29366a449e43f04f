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


def _snapshot(service: Service) -> dict[tuple[str, str], str]:
    """(kind, key) → its JSON, for every avatar and job now."""
    cards = {("avatar", name): avatar_card(service, name) for name in avatar_names(service.layout)}
    jobs = {("job", job.id): service.job_view(job) for job in service.store.list()}
    return {key: json.dumps(view) for key, view in (cards | jobs).items()}


def _event(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"


def _changes(before: dict[tuple[str, str], str], now: dict[tuple[str, str], str]) -> str:
    """The events that take a client from `before` to `now` ("" when nothing changed)."""
    changed = [_event(kind, data) for (kind, key), data in now.items() if before.get((kind, key)) != data]
    gone = [_event(f"{kind}-gone", json.dumps(key)) for kind, key in before.keys() - now.keys()]
    return "".join(changed + gone)


async def _stream(service: Service) -> AsyncIterator[str]:
    sent = await run_in_threadpool(_snapshot, service)
    yield f"retry: {RETRY_MS}\n" + _event("reset", "{}") + _changes({}, sent) + _event("ready", "{}")
    quiet_since = time.monotonic()
    while not service.stopping():  # or until the client goes: the response is then cancelled
        await asyncio.sleep(CHECK_S)
        now = await run_in_threadpool(_snapshot, service)
        message, sent = _changes(sent, now), now
        if not message and time.monotonic() - quiet_since >= KEEPALIVE_S:
            message = ": keep-alive\n\n"
        if message:
            quiet_since = time.monotonic()
            yield message
