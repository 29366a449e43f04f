"""What the service's clients and logs must not see: the server's file paths and API tokens."""

from __future__ import annotations

import logging
import re
from pathlib import Path

# `token=VALUE` in a URL's query (the API token travels there for links such as a video's src).
_QUERY_TOKEN = re.compile(r"([?&]token=)[^&#\s\"]*", re.IGNORECASE)


def without_path(message: str, path: Path, name: str) -> str:
    """`message` with the server path `path` replaced by `name` (what the client calls that file)."""
    return message.replace(str(path), name)


def redact_tokens(text: str) -> str:
    """`text` with the value of every `token=` query parameter replaced by `***`."""
    return _QUERY_TOKEN.sub(r"\1***", text)


class RedactTokens(logging.Filter):
    """Rewrites log records so that no URL in them shows its token (uvicorn's access log prints the full path
    with its query string, and its error log each WebSocket's: `"WebSocket /api/live?...&token=..." [accepted]`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        return True


# The loggers uvicorn writes request paths to: HTTP requests to the access log, WebSocket handshakes to the other.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_server_log() -> None:
    """Install RedactTokens on uvicorn's loggers (once; uvicorn configures its loggers before the app starts, and
    re-configuring them keeps a logger's filters)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
