"""Overlapping work on 2 cores: FFmpeg decoding and MediaPipe/OpenCV calls release the GIL, so threads help."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(iterable: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate `iterable` in a background thread, keeping up to `depth` items ready.

    Exceptions raised by the producer are re-raised in the consumer. If the consumer stops early, the
    producer thread is told to stop and finishes after at most one more item.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                if stop.is_set():
                    return
                items.put(item)
            items.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer
            items.put(exc)

    thread = threading.Thread(target=produce, name="amg-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)
