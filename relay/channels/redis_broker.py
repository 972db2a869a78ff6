"""Channels shared by many relay instances through Redis (``--redis``, the ``relay[redis]`` extra).

Each instance holds exactly two Redis connections, whatever its number of subscribers (never one
per subscriber, flask-sse's mistake: Redis' ``maxclients`` is 10,000):

* a **command** connection: a publish is one Lua script that appends the event to the channel's
  Stream (``XADD ... MAXLEN ~ history``, trimmed to the time-to-live, the key expiring when the
  channel goes quiet) and ``PUBLISH``-es it with its id, atomically; replays are ``XRANGE``;
* a **pub/sub** connection, subscribed to the channels that have subscribers on this instance
  (one ``SUBSCRIBE`` per channel, however many local subscribers; ``UNSUBSCRIBE`` when the last
  leaves), read by one task with ``get_message(timeout=None)``: no polling.

The Stream's ids are the events' ids, the same on every instance, so a client can replay on any
of them. A new subscriber is registered, its channel subscribed (confirmed), and only then
replayed: no event falls between the replay and the live stream.

When Redis goes away, publishes get 503 (:class:`BrokerUnavailable`), never a silent loss;
subscribers stay connected (heartbeats go on); the reader reconnects with backoff, subscribes
again, and reads each channel's Stream from the last event it delivered, so what was published
since Redis came back reaches everyone with no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..config import ChannelLimits
from .broker import BrokerUnavailable
from .events import ChannelEvent, EventKey, format_id, parse_id
from .history import Replay
from .hub import Hub

log = logging.getLogger("relay.redis")

STREAM, TOPIC, CONTROL = "relay:stream:", "relay:ch:", "relay:control"
# KEYS: the Stream, the pub/sub topic; ARGV: history length, ttl in ms, event name, data.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3], 'd', ARGV[4])
redis.call('XTRIM', KEYS[1], 'MINID', '~', tostring(now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {id, redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4])}
"""


def _client(url: str, role: str) -> aioredis.Redis:
    """One connection, no retries of redis-py's own: this broker decides what a failure means."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=1, timeout=5, client_name=f"relay:{os.getpid()}:{role}",
        retry=Retry(NoBackoff(), 0), socket_connect_timeout=5)
    return aioredis.Redis(connection_pool=pool)


def _event(entry_id: Any, fields: Any) -> ChannelEvent | None:
    """A Stream entry as an event (entries come as bytes: no decode_responses)."""
    key = parse_id(entry_id.decode()) if isinstance(entry_id, bytes) else None
    if key is None or not isinstance(fields, dict):
        return None
    name = fields.get(b"e", b"").decode()
    return ChannelEvent(key, fields.get(b"d", b"").decode(), name or None)


class RedisBroker:
    """Channels in Redis Streams, delivered through pub/sub (see the module docstring)."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, limits: ChannelLimits) -> None:
        self._url, self._loop, self._limits = url, loop, limits
        self._cmd = _client(url, "cmd")
        self._script = self._cmd.register_script(_PUBLISH)
        self.hub = Hub(loop, limits, on_first=self._watch, on_last=self._unwatch)
        self._pubsub: Any = None
        self._ready: dict[str, asyncio.Future[None]] = {}  # channel -> SUBSCRIBE confirmed
        self._last: dict[str, EventKey] = {}  # the newest event delivered here, per channel
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.connected = asyncio.Event()

    @classmethod
    async def connect(cls, url: str, loop: asyncio.AbstractEventLoop,
                      limits: ChannelLimits) -> RedisBroker:
        broker = cls(url, loop, limits)
        broker._reader = loop.create_task(broker._read_forever())
        return broker

    # -- publish and replay (the command connection) -------------------------------------------

    async def publish(self, channel: str, data: str, event: str | None) -> tuple[ChannelEvent, int]:
        args: list[int | str] = [self._limits.history, int(self._limits.ttl * 1000), event or "",
                                 data]
        try:
            entry_id, _instances = await self._script(keys=[STREAM + channel, TOPIC + channel],
                                                      args=args)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the channel store (Redis) is unavailable: {exc}") from None
        key = parse_id(entry_id.decode())
        assert key is not None
        return ChannelEvent(key, data, event), self.hub.count(channel)

    async def replay(self, channel: str, after: EventKey | None, given: bool) -> Replay:
        ready = self._ready.get(channel)
        if ready is not None:  # live events flow before the history is read: no gap
            await asyncio.wait_for(asyncio.shield(ready), 5)
        stream = STREAM + channel
        try:
            async with self._cmd.pipeline(transaction=False) as pipe:
                pipe.xrange(stream, "-", "+", count=1)
                pipe.xrevrange(stream, "+", "-", count=1)
                if given and after is not None:
                    pipe.xrange(stream, format_id(after), format_id(after), count=1)
                    pipe.xrange(stream, "(" + format_id(after), "+")
                else:
                    pipe.xrange(stream, "-", "+")
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the channel store (Redis) is unavailable: {exc}") from None
        oldest = results[0][0][0].decode() if results[0] else None
        newest = parse_id(results[1][0][0].decode()) if results[1] else None
        if newest is not None:  # what this instance has seen: the catch-up after a reconnect
            self._last.setdefault(channel, newest)  # starts past it
        events = [e for e in (_event(i, f) for i, f in results[-1]) if e is not None]
        if not given:
            return Replay([], False, oldest)
        found = after is not None and bool(results[2])
        return Replay(events, not found, oldest)

    # -- live events (the pub/sub connection) -----------------------------------------------------

    def _watch(self, channel: str) -> None:
        """The first local subscriber of ``channel``: SUBSCRIBE (confirmed by the reader)."""
        self._ready[channel] = self._loop.create_future()
        if self.connected.is_set():
            self._loop.create_task(self._subscribe(channel))

    def _unwatch(self, channel: str) -> None:
        ready = self._ready.pop(channel, None)
        if ready is not None and not ready.done():
            ready.cancel()
        self._last.pop(channel, None)
        if self.connected.is_set() and self._pubsub is not None:
            self._loop.create_task(self._unsubscribe(channel))

    async def _subscribe(self, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):  # (the reader notices a dead connection)
            await self._pubsub.subscribe(TOPIC + channel)

    async def _unsubscribe(self, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.unsubscribe(TOPIC + channel)

    async def _read_forever(self) -> None:
        """Read the pub/sub connection; when it breaks, reconnect with backoff, subscribe
        again, and catch each channel up from its Stream."""
        backoff = 0.1
        while not self._closed:
            try:
                await self._open_pubsub()
                backoff = 0.1
                while True:
                    self._on_message(await self._pubsub.get_message(timeout=None))
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("Redis pub/sub lost (%s); reconnecting in %.1f s", exc, backoff)
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _open_pubsub(self) -> None:
        client = _client(self._url, "pubsub")
        self._pubsub = client.pubsub()
        channels = list(self._ready)
        await self._pubsub.subscribe(CONTROL, *(TOPIC + c for c in channels))
        self.connected.set()
        late = [TOPIC + c for c in self._ready if c not in channels]  # watched meanwhile
        if late:
            await self._pubsub.subscribe(*late)
        log.info("Redis pub/sub connected (%d channels)", len(self._ready))
        await self._catch_up()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await pubsub.connection_pool.disconnect()

    async def _catch_up(self) -> None:
        """Deliver what each channel's Stream holds past the last event delivered here."""
        for channel in list(self._ready):
            last = self._last.get(channel)
            start = "-" if last is None else "(" + format_id(last)
            entries = await self._cmd.xrange(STREAM + channel, start, "+")
            for entry_id, fields in entries or ():
                event = _event(entry_id, fields)
                if event is not None:
                    self._deliver(channel, event)

    def _on_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        name = message["channel"].decode()
        if not name.startswith(TOPIC):
            return
        channel = name[len(TOPIC):]
        if message["type"] == "subscribe":
            ready = self._ready.get(channel)
            if ready is not None and not ready.done():
                ready.set_result(None)
        elif message["type"] == "message":
            entry_id, event_name, data = message["data"].decode().split("\n", 2)
            key = parse_id(entry_id)
            if key is not None:
                self._deliver(channel, ChannelEvent(key, data, event_name or None))

    def _deliver(self, channel: str, event: ChannelEvent) -> None:
        last = self._last.get(channel)
        if last is not None and event.key <= last:
            return  # (caught up already)
        self._last[channel] = event.key
        self.hub.deliver(channel, event)

    async def close(self) -> None:
        self._closed = True
        self.hub.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._drop_pubsub()
        await self._cmd.aclose()
        await self._cmd.connection_pool.disconnect()
