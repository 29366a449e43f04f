"""The API token (AMG_API_TOKEN): one check for every HTTP request and every WebSocket of `amg serve`."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection


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
