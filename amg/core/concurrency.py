"""Overlapping work on 2 cores: FFmpeg decoding and MediaPipe/OpenCV calls release the GIL, so threads help."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, TypeVar

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


class Lookahead(Generic[T]):
    """`fn(step)` for consecutive steps, each next step's computed in a background thread while the caller works on
    the last one's: the training loop's batches, built while the networks train on the batch before.

    The results are `fn`'s own (it must depend on `step` alone); a step asked out of turn (a resumed run) is
    computed when asked. Nothing is computed ahead for `stop` and beyond. An error of `fn` is raised to the
    caller when it asks for that step. `close` waits for the step under way, if any, and ends the thread.
    """

    def __init__(self, fn: Callable[[int], T], stop: int):
        self.fn, self.stop = fn, stop
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="amg-lookahead")
        self._ahead: tuple[int, Future] | None = None

    def __call__(self, step: int) -> T:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == step:
            result = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()  # unless it already runs: then it finishes unused
            result = self.fn(step)
        if step + 1 < self.stop:
            self._ahead = (step + 1, self._pool.submit(self.fn, step + 1))
        return result

    def close(self) -> None:
        self._ahead = None
        self._pool.shutdown(wait=True, cancel_futures=True)
