"""`amg serve`'s settings (no web framework imported: the command line reads their defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from amg.core.errors import AmgError


@dataclass
class ServiceSettings:
    max_upload_mb: float = 50.0  # speech uploads
    max_video_mb: float = 500.0  # avatar video uploads
    max_audio_s: float = 600.0  # longest speech a job may render (and a live stream may last)
    max_live_chunk_kb: float = 64.0  # largest audio message of a live stream (2 s of PCM16)
    # A live stream whose client sends nothing for this long is closed: it would hold one of the `workers` stream
    # slots forever. A client streaming a microphone sends a chunk every 20-100 ms, silence included.
    live_idle_s: float = 30.0
    workers: int = 1  # jobs run at once (one render already uses every core of a small machine)
    precision: str = "auto"  # of the trainings and renders it runs (amg.core.precision)
    token: str | None = field(default_factory=lambda: os.environ.get("AMG_API_TOKEN") or None)
    # Web pages (scheme://host[:port]) besides the service's own that may change anything or stream live: a
    # browser sends every page's origin, and a page of any other site is refused (amg.service.auth).
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise AmgError(f"The service needs at least 1 worker, got {self.workers}: its jobs would never run.")
        self.allowed_origins = tuple(_origin(origin) for origin in self.allowed_origins)


def _origin(text: str) -> str:
    """An allowed origin in the form a browser sends it (scheme://host[:port], lower case); AmgError for anything
    else, which no browser would ever send (a bare host name, a page's path)."""
    origin = text.strip().rstrip("/").lower()
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise AmgError(
            f"Allowed origin {text!r}: give it as a browser names it, scheme://host[:port] (https://example.org)."
        )
    return origin
