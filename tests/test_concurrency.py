import threading

import pytest

from amg.core.concurrency import prefetch


def test_prefetch_yields_everything_in_order():
    assert list(prefetch(range(100), depth=3)) == list(range(100))


def test_prefetch_reraises_producer_errors():
    def broken():
        yield 1
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        list(prefetch(broken()))


def test_prefetch_stops_its_thread_when_the_consumer_stops_early():
    before = threading.active_count()
    stream = prefetch(iter(range(10_000)), depth=2)
    assert next(stream) == 0
    stream.close()
    assert threading.active_count() == before
