"""Writing pre-encoded events to a client: the mock's event source, built to be cheap per event
because the mock is the benchmarks' load source.

:func:`serve_paced` writes one event per ``delay`` from a timer callback (no task wake-up per
event); :func:`serve_back_to_back` writes as fast as the client takes them, a batch per write.
Both respect backpressure (a slow reader skips ticks, or is waited for) and stop when the
client leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from ..http1.sse import EVENT_STREAM_HEADERS
from ..net.exchange import Exchange

_BATCH = 32  # back-to-back streams write this many events per write, then let others run


def start_stream(ex: Exchange, retry: int | None = None) -> None:
    ex.start(200, EVENT_STREAM_HEADERS)
    if retry is not None:
        ex.write(b"retry: %d\n\n" % retry)  # a retry field and a blank line dispatch nothing


def stamped(event: bytes) -> bytes:
    """The event with the time it is written (``"mock_sent_at"``), for latency measurements;
    events not ending in ``}\\n\\n`` (like ``[DONE]``) are left as they are."""
    if not event.endswith(b"}\n\n"):
        return event
    return event[:-3] + b',"mock_sent_at":%.6f}\n\n' % time.time()


async def serve_back_to_back(ex: Exchange, events: Sequence[bytes], stamp: bool = False) -> None:
    """Write pre-encoded events as fast as the client takes them: a batch per write (each
    event still its own chunk), yielding to other connections between batches."""
    for start in range(0, len(events), _BATCH):
        batch = events[start : start + _BATCH]
        ex.write_pieces([stamped(e) for e in batch] if stamp else list(batch))
        if ex.flow.paused:
            await ex.wait_writable()
        else:
            await asyncio.sleep(0)


async def serve_paced(ex: Exchange, events: Sequence[bytes], delay: float,
                      stamp: bool = False) -> None:
    """Write pre-encoded events ``delay`` seconds apart (the first at once)."""
    await _Pacer(ex, events, delay, stamp).run()


class _Pacer:
    """One event per ``delay`` from a timer callback (no task wake-up per event): cheap enough
    for tens of thousands of paced events per second. Deadlines advance by ``delay`` from the
    first event, so the pace does not drift; a paused (slow) reader skips ticks."""

    def __init__(self, ex: Exchange, events: Sequence[bytes], delay: float, stamp: bool) -> None:
        self._ex, self._events, self._delay, self._stamp = ex, events, delay, stamp
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._next = 0
        self._at = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        if not self._events:
            return
        self._tick()
        try:
            await self._done
        finally:
            if self._handle is not None:
                self._handle.cancel()

    def _tick(self) -> None:
        ex = self._ex
        if not ex.open:
            self._done.set_result(None)
            return
        if not ex.flow.paused:
            event = self._events[self._next]
            ex.write(stamped(event) if self._stamp else event)
            self._next += 1
            if self._next == len(self._events):
                self._handle = None
                self._done.set_result(None)
                return
        self._at += self._delay
        self._handle = self._loop.call_at(self._at, self._tick)
