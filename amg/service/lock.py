"""One `amg serve` per DATAROOT: a second one would take the first one's running jobs for interrupted ones and
run them again. The lock is an flock on DATAROOT/service/server.lock, which names the server holding it; the
system releases it when that process ends however it ends, so a lock left by a killed server is simply taken."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from typing import Iterator

from amg.core.errors import AmgError
from amg.core.layout import Layout

log = logging.getLogger(__name__)


@contextlib.contextmanager
def server_lock(layout: Layout, url: str) -> Iterator[None]:
    """Hold the DATAROOT's server lock while the block runs, recording this server (its PID and `url`) in it; an
    AmgError naming the other server if one holds it."""
    path = layout.server_lock()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "a server that has not written its PID yet"
            raise AmgError(
                f"DATAROOT {layout.root} is already served by {holder}: stop that server first, or serve another "
                "DATAROOT."
            ) from None
        lock.seek(0)
        if previous := lock.read().strip():
            log.info("Taking over the server lock of %s, which has ended.", previous)
        lock.seek(0)
        lock.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        lock.write(f"`amg serve` PID {os.getpid()} on {socket.gethostname()} at {url}, since {started}\n")
        lock.flush()
        try:
            yield
        finally:  # a server that ends cleanly leaves nothing to take over
            lock.seek(0)
            lock.truncate()
