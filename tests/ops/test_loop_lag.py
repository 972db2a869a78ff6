"""The loop-lag sampler, on a fake clock: an on-time loop records zero lateness, a callback
that holds the loop records how long it held it, and stop disarms the timer."""

from __future__ import annotations

from relay.ops.loop_lag import LAG_BUCKETS, LoopLag
from relay.ops.metrics import Histogram
from tests.support.clock import FakeLoop


def sampler(loop: FakeLoop, interval: float = 0.05) -> tuple[LoopLag, Histogram]:
    histogram = Histogram("lag", "lag", LAG_BUCKETS)
    lag = LoopLag(loop, histogram, interval)  # type: ignore[arg-type]
    lag.start()
    return lag, histogram


def test_an_idle_loop_is_never_late() -> None:
    loop = FakeLoop()
    _, histogram = sampler(loop)
    loop.advance(1.0)
    assert histogram.count == 20
    assert histogram.sum == 0.0
    assert histogram.counts[0] == 20  # all in the first bucket (<= 1 ms)


def test_a_callback_holding_the_loop_shows_as_lag() -> None:
    loop = FakeLoop()
    _, histogram = sampler(loop)
    start = loop.now

    def hold() -> None:  # a blocking callback: the clock moves on while it runs
        loop.now += 0.3

    loop.call_at(start + 0.04, hold)
    loop.advance(0.06)  # the tick due at +0.05 runs at +0.34
    assert histogram.count == 1
    assert abs(histogram.sum - 0.29) < 1e-9
    bucket = LAG_BUCKETS.index(0.5)
    assert histogram.counts[bucket] == 1
    # the next sample is due an interval after the late run, not in a burst of catch-ups
    [due] = loop.pending
    assert abs(due - (start + 0.39)) < 1e-9


def test_stop_disarms_the_timer() -> None:
    loop = FakeLoop()
    lag, histogram = sampler(loop)
    loop.advance(0.1)
    lag.stop()
    loop.advance(1.0)
    assert histogram.count == 2
    assert loop.pending == []
    lag.stop()  # twice is harmless
