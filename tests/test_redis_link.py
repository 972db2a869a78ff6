"""The instance's two Redis connections, against a real redis-server: messages reach the
listener of their prefix, confirmations too, and after Redis comes back every listener's
topics are subscribed again and each is told to catch up; a close is bounded whatever Redis
does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.exceptions import RedisError

from relay.channels.redis_broker import RedisBroker
from relay.config import ChannelLimits, ResumeLimits
from relay.redis_link import CLOSE_WAIT, RedisLink
from relay.streams.redis_store import RedisStore

from .support.redis_server import CLOSE_BOUND, RedisServer


class _Listener:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.wanted: list[str] = []
        self.got: list[tuple[str, str, Any]] = []
        self.connects = self.losses = 0
        self.changed = asyncio.Event()

    def topics(self) -> list[str]:
        return list(self.wanted)

    def on_message(self, topic: str, kind: str, data: Any) -> None:
        assert topic.startswith(self.prefix)
        self.got.append((topic, kind, data))
        self.changed.set()

    async def on_connected(self) -> None:
        self.connects += 1
        self.changed.set()

    def on_lost(self) -> None:
        self.losses += 1

    async def wait(self, ok: Any, timeout: float = 10) -> None:
        async def until() -> None:
            while not ok():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


def test_prefixes_confirmations_and_a_reconnect(redis_server: RedisServer) -> None:
    async def run() -> None:
        link = RedisLink(redis_server.url, asyncio.get_running_loop())
        a, b = _Listener("a:"), _Listener("b:")
        a.wanted = ["a:1"]
        link.listen(a, "a:")
        link.listen(b, "b:")
        await a.wait(lambda: a.connects == 1 and b.connects == 1)
        await link.subscribe("b:2")
        await b.wait(lambda: any(t == "b:2" and k == "subscribe" for t, k, _ in b.got))
        await link.cmd.publish("a:1", "one")
        await link.cmd.publish("b:2", "two")
        await a.wait(lambda: ("a:1", "message", b"one") in a.got)
        await b.wait(lambda: ("b:2", "message", b"two") in b.got)
        assert sorted(redis_server.relay_connections().values()) == [2]
        b.wanted = ["b:2"]
        redis_server.stop()
        redis_server.start()  # (same port, empty)
        await a.wait(lambda: a.connects == 2 and b.connects == 2, timeout=15)
        assert a.losses == 1 and b.losses == 1
        # The command connection died with the server: its first command fails (no retries
        # of redis-py's own), the next reconnects.
        with contextlib.suppress(RedisError):
            await link.cmd.ping()
        await link.cmd.publish("b:2", "again")  # subscribed again by the reconnect
        await b.wait(lambda: ("b:2", "message", b"again") in b.got)
        await asyncio.wait_for(link.close(), CLOSE_BOUND)
        assert not link.connected.is_set()

    asyncio.run(run())



class _Absorbing(_Listener):
    """Absorbs the cancel delivered while it catches up, as Python 3.11's ``asyncio.wait_for``
    does inside redis-py when the call it wraps ends in the same step as the cancel (seen: a
    reconnect's HELLO): the reader then went on to block in ``get_message`` for good."""

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.entered = asyncio.Event()

    async def on_connected(self) -> None:
        if self.entered.is_set():
            return  # (one cancel absorbed, as in the hang seen)
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


def _link_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "RedisLink" in repr(t.get_coro())]


def test_close_ends_the_reader_even_when_a_cancel_is_absorbed(redis_server: RedisServer) -> None:
    async def run() -> float:
        link = RedisLink(redis_server.url, asyncio.get_running_loop())
        listener = _Absorbing("a:")
        link.listen(listener, "a:")
        await asyncio.wait_for(listener.entered.wait(), 10)
        started = time.monotonic()
        await asyncio.wait_for(link.close(), CLOSE_BOUND + 5)  # (main: TimeoutError)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0)
        assert _link_tasks() == []  # the reader ended; it does not read on behind the close
        return elapsed

    assert asyncio.run(run()) < CLOSE_WAIT


def test_close_is_bounded_while_redis_does_not_answer(redis_server: RedisServer) -> None:
    """Redis stopped with SIGSTOP: the port accepts, nothing answers. The link, a store and a
    broker each close within the bound, with commands waiting on replies that never come."""
    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        link = RedisLink(redis_server.url, loop)
        store = await RedisStore.connect(redis_server.url, loop, ResumeLimits())
        broker = await RedisBroker.connect(redis_server.url, loop, ChannelLimits())
        link.listen(_Listener("a:"), "a:")
        await asyncio.wait_for(link.connected.wait(), 10)
        stream = store.create(None)
        assert stream is not None
        redis_server.pause()
        stream.feed([b"data: 1\n\n"])  # the writer waits on a reply
        publish = loop.create_task(broker.publish("c", "x", None))
        ping = loop.create_task(link.cmd.ping())
        await asyncio.sleep(0.2)  # (let the commands be sent: they wait on replies now)
        assert not publish.done() and not ping.done()
        times = []
        for part in (link, store, broker):
            started = time.monotonic()
            await asyncio.wait_for(part.close(), CLOSE_BOUND + 5)
            times.append(time.monotonic() - started)
        for task in (publish, ping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # (cut: any error)
                await task
        return times

    try:
        times = asyncio.run(run())
    finally:
        redis_server.resume()
    assert max(times) < CLOSE_BOUND, times
