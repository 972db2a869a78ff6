"""Serving an event stream from a local endpoint (the mock, demos), on an :class:`Exchange`.

:func:`serve_events` takes an async iterator of events (``relay.sse.Event`` or pre-encoded
bytes) and writes them as they come, with an optional ``retry`` first, a heartbeat comment
whenever the source stays silent for ``heartbeat`` seconds, backpressure (it waits while the
client is slow), and an end when the client leaves (the server cancels the handler task, which
closes the source). :func:`serve_paced` and :func:`serve_back_to_back` are its two fast paths
for lists of pre-encoded events, which the mock uses as the benchmarks' load source: a timer
callback per event instead of a task wake-up, or batched writes.

Heartbeats here sit between whole events by construction, and are a lone comment line: a
comment at an event boundary dispatches nothing in any conformant parser, whereas ``: ping``
plus a blank line makes parsers that keep a last event id (openai-python does) dispatch an
empty event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from .server import Exchange
from .sse import HEARTBEAT, Event, encode_event

SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
_BATCH = 32  # back-to-back streams write this many events per write, then let others run


def start_stream(ex: Exchange, retry: int | None = None) -> None:
    ex.start(200, SSE_HEADERS)
    if retry is not None:
        ex.write(b"retry: %d\n\n" % retry)  # a retry field and a blank line dispatch nothing


async def serve_events(ex: Exchange, source: AsyncIterator[Event | bytes], *,
                       retry: int | None = None, heartbeat: float = 15.0) -> None:
    """Stream ``source`` to the client, then end the response (see the module docstring)."""
    start_stream(ex, retry)
    pending: asyncio.Future[Event | bytes] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(anext(source))
            while True:
                done, _ = await asyncio.wait({pending}, timeout=heartbeat or None)
                if done:
                    break
                ex.write(HEARTBEAT)  # silent source: keep proxies and clients from timing out
            try:
                item = pending.result()
            except StopAsyncIteration:
                break
            pending = None
            ex.write(item if isinstance(item, bytes)
                     else encode_event(item.data, event=None if item.event == "message"
                                       else item.event, id=item.id or None))
            await ex.drain()
        ex.end()
    finally:
        if pending is not None and not pending.done():
            # The source is suspended inside its own await; cancelling the step wakes it with
            # CancelledError (its finally blocks run), and aclose() must wait until that step
            # has really stopped, or it finds the generator "already running".
            pending.cancel()
            await asyncio.wait({pending})
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


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
            await ex.drain()
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
        if ex.gone:
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
