"""bench/fanout/scenarios.py: channel names and the drain's bound (the windows run in bench)."""

from __future__ import annotations

import asyncio

from bench.fanout.scenarios import channel_names, drain
from bench.fanout.wire import Tally


def test_f1_has_one_channel_and_f2_numbered_ones() -> None:
    assert channel_names(1) == ["f1"] and channel_names(3) == ["c0", "c1", "c2"]


def test_a_drain_ends_when_all_arrived_or_at_its_timeout() -> None:
    async def go() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await drain(Tally(received=5), 5, 10)
        t1 = loop.time()
        await drain(Tally(), 1, 0.05)
        return t1 - t0, loop.time() - t1

    done, timed_out = asyncio.run(go())
    assert done < 0.05 and 0.05 <= timed_out < 5
