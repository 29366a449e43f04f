"""Who may use `amg serve`: the API token (AMG_API_TOKEN), one check for every HTTP request and every WebSocket;
and the web pages that may change anything or stream live (the service's own, and the allowed origins)."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

# The requests that change something: a page of another site may send them (a form's POST, a "simple" request
# with text/plain) without reading the answer, so they are refused unless its origin is allowed.
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def given_token(connection: HTTPConnection) -> str:
    """The token a request or WebSocket presents: `Authorization: Bearer TOKEN`, an `X-API-Token` header, or
    `?token=` (for links such as a video's src, and for browsers' WebSockets, which cannot set headers)."""
    auth = connection.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return connection.headers.get("x-api-token") or connection.query_params.get("token") or ""


def authorized(connection: HTTPConnection, token: str | None) -> bool:
    """Whether `connection` may use a service whose token is `token` (None: anyone may). Compared in constant
    time, so how long the answer takes tells nothing of the token."""
    return not token or hmac.compare_digest(given_token(connection).encode(), token.encode())


def foreign_origin(connection: HTTPConnection, allowed: tuple[str, ...]) -> str | None:
    """The origin of the web page that sent `connection` when it is another site's and not in `allowed` (a
    browser names the page's origin in the Origin header of every POST, DELETE and WebSocket); None for the
    service's own page, an allowed origin, and clients that are not browsers (they send no Origin)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return None
    origin = origin.strip().rstrip("/").lower()
    own = urlsplit(origin).netloc
    if origin in allowed or (own and own == connection.headers.get("host", "").lower()):
        return None
    return origin


def refused_origin_message(origin: str) -> str:
    return (
        f"Refused: a web page of {origin} may not use this service (only its own page may); to allow it, start it "
        f"with `amg serve ... --allow-origin {origin}`."
    )
