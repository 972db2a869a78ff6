"""How late the event loop runs: the relay's own measure of a stalled loop.

One process serves every stream and every channel on one event loop, so anything that holds the
loop (a big fan-out not sliced, a garbage collection, a blocking call) delays every stream at
once. :class:`LoopLag` asks the loop to run a callback every ``interval`` seconds and records
how late it ran into a histogram (``relay_event_loop_lag_seconds``): a healthy loop shows lags
of a millisecond or two (uvloop's clock has millisecond resolution), a stalled one shows the
stall. Twenty callbacks a second cost nothing measurable.
"""

from __future__ import annotations

import asyncio

from .metrics import Histogram

LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLag:
    """Samples the loop's lateness every ``interval`` seconds (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, histogram: Histogram,
                 interval: float = 0.05) -> None:
        self._loop, self._histogram, self._interval = loop, histogram, interval
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self._loop.time() + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        # (Rounded to the microsecond: the clock's float noise is not lag.)
        self._histogram.observe(round(max(0.0, now - self._due), 6))
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
