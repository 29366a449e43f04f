import threading

import pytest

from amg.core.concurrency import Lookahead, prefetch


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


def test_lookahead_computes_the_next_step_in_another_thread_and_out_of_turn_steps_when_asked():
    threads = {}

    def square(step: int) -> int:
        threads[step] = threading.current_thread()
        return step * step

    ahead = Lookahead(square, stop=6)
    try:
        assert [ahead(step) for step in (0, 1, 2)] == [0, 1, 4]
        assert threads[1] is not threading.current_thread()  # built ahead, during step 0
        assert ahead(4) == 16 and threads[4] is threading.current_thread()  # resumed elsewhere: computed when asked
        assert ahead(5) == 25
    finally:
        ahead.close()
    assert {0, 1, 2, 4, 5} <= set(threads) <= {0, 1, 2, 3, 4, 5}  # 3 cancelled or unused; nothing at `stop`


def test_lookahead_raises_an_error_of_the_step_ahead_when_that_step_is_asked_and_closes_its_thread():
    def broken(step: int) -> int:
        if step == 1:
            raise ValueError("bad batch")
        return step

    before = threading.active_count()
    ahead = Lookahead(broken, stop=10)
    assert ahead(0) == 0
    with pytest.raises(ValueError, match="bad batch"):
        ahead(1)
    ahead.close()
    assert threading.active_count() == before
