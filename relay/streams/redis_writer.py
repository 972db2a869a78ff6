"""The writer of the Redis store: the streams generated here, copied to Redis by one task.

The upstream's read path never waits for Redis: each change marks its stream dirty (from the
first event Redis lacks) and wakes the writer, one task that sends, in one pipeline, what every
dirty stream lacks (``XADD`` per event, its meta, its expiry, then a ``PUBLISH`` on its topic:
a poke that says "read me") and the control messages waiting (``follow``, ``unfollow``,
``cancel`` on ``relay:rs-control``). When a write fails, it logs once, backs off and then
rewrites every stream the registry holds (Redis may have lost them all; an ``XADD`` refused as
already there is ignored). The key layout is in :mod:`relay.streams.redis_store`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..redis_link import settle
from .registry import Streams
from .stream import ResumableStream

log = logging.getLogger("relay.redis")

KEY, CONTROL = "relay:rs:", "relay:rs-control"
ERRORS = (RedisError, OSError, TimeoutError)


class RedisWriter:
    """The writes of one store (see the module docstring): ``quiet`` is set while nothing
    waits to be written."""

    def __init__(self, cmd: Redis, registry: Streams) -> None:
        self._cmd, self._registry, self.limits = cmd, registry, registry.limits
        self._dirty: dict[str, int] = {}  # owned stream -> first event Redis lacks
        self._control: list[bytes] = []  # control messages for the next write
        self._wake, self.quiet = asyncio.Event(), asyncio.Event()
        self._closing = False

    def mark(self, stream_id: str, start: int, control: bytes = b"") -> None:
        """Write ``stream_id``'s events from ``start`` on (with its meta) soon; or, with
        ``control``, publish that verb for it to every instance."""
        if control:
            self._control.append(control + b" " + stream_id.encode())
        else:
            self._dirty.setdefault(stream_id, start)  # (the earliest still unwritten)
        self.quiet.clear()
        self._wake.set()

    async def run(self) -> None:
        """The one task that writes, until :meth:`stop`."""
        backoff = 0.0  # (not 0: failing)
        while not self._closing:  # (checked too: a cancel absorbed by redis-py ends it here)
            if not self._dirty and not self._control:
                self.quiet.set()
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
                backoff = 0.0
            except ERRORS as exc:
                if not backoff:
                    log.warning("Redis writes of resumable streams failed (%s); retrying", exc)
                backoff = min(max(backoff * 2, 0.1), 2.0)
                self._dirty = dict.fromkeys(self._registry.ids(), 0)  # (Redis lost all?)
                await asyncio.sleep(backoff)
                self._wake.set()

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        control, self._control = self._control, []
        async with self._cmd.pipeline(transaction=False) as pipe:
            for sid, start in dirty.items():
                stream = self._registry.get(sid)
                if stream is not None:  # (else forgotten meanwhile: its keys expire)
                    self._queue(pipe, stream, start)
            for message in control:
                pipe.publish(CONTROL, message)
            results = await pipe.execute(raise_on_error=False) if len(pipe) else []
        for result in results:  # (an XADD refused as already there is a rewrite: fine)
            if isinstance(result, Exception) and "equal or smaller" not in str(result):
                raise result

    def _queue(self, pipe: Any, stream: ResumableStream, start: int) -> None:
        """Queue the events of ``stream`` from ``start`` on, its meta and its expiry."""
        key, events = KEY + stream.id, stream.events
        for seq in range(start + 1, len(events) + 1):
            pipe.xadd(key, {"e": events[seq - 1]}, id=f"0-{seq}")
        pipe.hset(key + ":meta", mapping={
            "owner": stream.owner.hex() if stream.owner else "", "status": stream.status or
            "live", "produced": stream.produced, "count": len(events), "tail": stream.tail})
        ttl = self.limits.ttl + (self.limits.orphan_timeout if stream.live else 0)
        pipe.pexpire(key, int(ttl * 1000))
        pipe.pexpire(key + ":meta", int(ttl * 1000))
        pipe.publish(key, b"%d" % len(events))  # (last: a mirror poked reads all of it)

    async def stop(self) -> None:
        """Let the writer send what is left (the streams' ends), bounded; then end its task."""
        await settle(self.quiet.wait())
        self._closing = True
        self._wake.set()  # (a writer between two flushes ends now)
