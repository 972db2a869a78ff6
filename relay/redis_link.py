"""One relay instance's two Redis connections, shared by channels and resumable streams.

Whatever its subscribers, streams and readers, an instance holds exactly two connections
(never one per subscriber, flask-sse's mistake: Redis' ``maxclients`` is 10,000):

* ``cmd``, the **command** connection: publishes, Stream writes and reads, pipelined; a pool of
  one connection, so commands queue on it in order;
* the **pub/sub** connection, read by one task with ``get_message(timeout=None)`` (no polling)
  and dispatched by topic prefix to the :class:`TopicListener` that registered the prefix
  (the channel broker, the resumable-stream store). A topic of its own (``ALWAYS``) keeps the
  connection subscribed to something, so it can be read before any listener needs it.

When the pub/sub connection breaks, the reader tells every listener (``on_lost``), reconnects
with backoff, subscribes again to every listener's ``topics()`` and then lets each catch up
(``on_connected``): a listener reads what it may have missed from Redis itself.

``close`` is bounded whatever Redis does (gone, stopped, paused, slow): it marks the link
closing (so the reader's loop ends at its next step instead of reconnecting), closes the
sockets (a read blocked on one fails at once), and waits for each part at most
``CLOSE_WAIT`` with :func:`settle`. A cancel alone is not enough: one delivered while redis-py
(re)connects can be absorbed inside it, and the reader then blocked in ``get_message`` for
good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("relay.redis")

ERRORS = (RedisError, OSError, TimeoutError)
ALWAYS = "relay:control"
CLOSE_WAIT = 2.0  # seconds a close waits for each part (a task, a socket's close)


async def settle(*parts: Awaitable[Any], seconds: float = CLOSE_WAIT) -> bool:
    """Wait at most ``seconds`` for ``parts`` to finish (their errors ignored); cancel what is
    still running then and return False without waiting for it (``asyncio.wait_for`` would
    wait for the cancel to take: forever, if the cancel is absorbed)."""
    tasks = [asyncio.ensure_future(part) for part in parts]
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in tasks:
        task.add_done_callback(_retrieve)
        if task in pending:
            task.cancel()
    return not pending


async def _shut(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
            await pubsub.connection_pool.disconnect()  # (also a connection still opening)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # (retrieved: a close's errors are expected, not to be logged)


def one_connection(url: str, role: str) -> aioredis.Redis:
    """One connection, no retries of redis-py's own: the users decide what a failure means."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=1, timeout=5, client_name=f"relay:{os.getpid()}:{role}",
        retry=Retry(NoBackoff(), 0), socket_connect_timeout=5)
    return aioredis.Redis(connection_pool=pool)


class TopicListener(Protocol):
    """A user of the pub/sub connection."""

    def topics(self) -> list[str]:
        """The topics to be subscribed to now (asked on every (re)connect)."""
        ...

    def on_message(self, topic: str, kind: str, data: Any) -> None:
        """A message (``kind`` "message") or a confirmation ("subscribe", "unsubscribe")."""
        ...

    async def on_connected(self) -> None:
        """Subscribed again after a (re)connect: catch up from Redis."""
        ...

    def on_lost(self) -> None: ...


class RedisLink:
    """The instance's two connections and the pub/sub reader (see the module docstring)."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url, self._loop = url, loop
        self.cmd = one_connection(url, "cmd")
        self.connected = asyncio.Event()  # the pub/sub connection is up and subscribed
        self._pubsub: Any = None
        self._listeners: list[tuple[tuple[str, ...], TopicListener]] = []
        self._lock = asyncio.Lock()  # one (UN)SUBSCRIBE or reconnect at a time
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.trouble = "not connected yet"  # why the pub/sub connection is down (for /healthz)

    def health(self) -> tuple[str, str] | None:
        """The check /healthz makes (``Observer.health``): while the link is down, why (a
        message and a code), so /healthz answers 503; None while it is up. The pub/sub reader
        notices a lost connection at once and reconnects with backoff: no probe of its own."""
        if self.connected.is_set():
            return None
        return (f"Redis (--redis) is unreachable: {self.trouble}; channels and resumable "
                "streams shared through it are unavailable", "redis_unavailable")

    def listen(self, listener: TopicListener, *prefixes: str) -> None:
        """Messages on topics starting with ``prefixes`` go to ``listener``; the reader starts
        with the first listener."""
        self._listeners.append((prefixes, listener))
        if self._reader is None:
            self._reader = self._loop.create_task(self._read_forever())

    async def subscribe(self, *topics: str) -> None:
        """SUBSCRIBE now (confirmed later, through ``on_message``); raises when not connected
        (the reconnect subscribes to every listener's topics anyway)."""
        async with self._lock:
            if self._pubsub is None or not self.connected.is_set():
                raise ConnectionError("Redis pub/sub is not connected")
            await self._pubsub.subscribe(*topics)

    async def unsubscribe(self, *topics: str) -> None:
        async with self._lock:
            if self._pubsub is not None and self.connected.is_set():
                await self._pubsub.unsubscribe(*topics)

    async def _read_forever(self) -> None:
        backoff, pubsub = 0.1, None
        try:
            while not self._closing:
                pubsub = self._pubsub = one_connection(self.url, "pubsub").pubsub()
                try:
                    await self._open(pubsub)
                    backoff = 0.1
                    for _, listener in list(self._listeners):
                        await listener.on_connected()
                    while not self._closing:
                        self._dispatch(await pubsub.get_message(timeout=None))
                except ERRORS as exc:
                    self.connected.clear()
                    self.trouble = str(exc) or type(exc).__name__
                    if self._closing:
                        break
                    for _, listener in list(self._listeners):
                        listener.on_lost()
                    log.warning("Redis pub/sub lost (%s); reconnecting in %.1f s", exc, backoff)
                    await self._drop()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:  # (closing: also the one redis-py reconnected after the close's drop)
            self.connected.clear()
            await _shut(pubsub)

    def _topics(self) -> set[str]:
        return {t for _, listener in self._listeners for t in listener.topics()}

    async def _open(self, pubsub: Any) -> None:
        async with self._lock:
            first = self._topics()
            await pubsub.subscribe(ALWAYS, *first)
            self.connected.set()
            late = self._topics() - first  # (asked for while this connected)
            if late:
                await pubsub.subscribe(*late)
        log.info("Redis pub/sub connected (%d topics)", len(first | late) + 1)

    def _dispatch(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        topic = message["channel"].decode()
        for prefixes, listener in self._listeners:
            if topic.startswith(prefixes):
                listener.on_message(topic, message["type"], message["data"])
                return

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        await _shut(pubsub)

    async def close(self) -> None:
        """Bounded: about ``3 * CLOSE_WAIT`` at most, whatever Redis does (module docstring)."""
        self._closing = True
        self.connected.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
        await settle(self._drop())  # (closes the socket a blocked read waits on)
        if reader is not None:
            await settle(reader)
        await settle(self._close_cmd())

    async def _close_cmd(self) -> None:
        await self.cmd.aclose()
        await self.cmd.connection_pool.disconnect()
