"""Mirrors (copies of streams another instance owns, through a real redis-server) in this
instance's memory budget: counted while held, let go with their last reader, also when a read
of Redis was still on its way, and let go before a generation of this instance is stopped."""

from __future__ import annotations

import asyncio
import time

from relay.config import ResumeLimits
from relay.http1.messages import Request
from relay.net.exchange import Exchange
from relay.net.flow import WriteFlow
from relay.streams.redis_store import RedisStore
from relay.streams.stream import Follower, ResumableStream

from ..support import FakeTransport, LoopThread
from ..support.redis_server import CLOSE_BOUND, RedisServer


class _Owner:
    def exchange_ended(self, ex: Exchange) -> None:
        pass


def _reader(stream: ResumableStream, reading: bool = True) -> tuple[Follower, FakeTransport]:
    transport, flow = FakeTransport(), WriteFlow()
    if not reading:
        flow.pause()  # a client that never reads
    request = Request(b"GET", b"/v1/streams/x", [], b"1.1", keep_alive=True)
    ex = Exchange(_Owner(), request, transport, flow)  # type: ignore[arg-type]
    ex.start(200, [(b"content-type", b"text/event-stream")])
    follower = Follower(ex, stream, 0, lambda _f, _how: None)
    stream.add(follower)
    return follower, transport


async def _until(predicate: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_a_mirror_let_go_while_a_read_is_on_its_way_counts_nothing(
        redis_server: RedisServer, lt: LoopThread) -> None:
    """The last reader leaves while a read of Redis (started by a poke) is on its way: when
    that read comes back, the mirror is gone and nothing is counted (it was counted for good,
    drifting the gauge up until every resume got 503)."""
    xlen = redis_server.client().xlen

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        a = await RedisStore.connect(redis_server.url, loop, ResumeLimits())
        b = await RedisStore.connect(redis_server.url, loop, ResumeLimits())
        try:
            stream = a.create(None)
            assert stream is not None
            stream.feed([b"data: one\n\n"])
            key = b"relay:rs:" + stream.id.encode()
            await _until(lambda: xlen(key) == 1)
            mirror = await b.find(stream.id)
            assert mirror is not None
            follower, _ = _reader(mirror)
            held = b.held
            follower.on_client_gone()  # the last reader leaves: the mirror is let go
            stream.feed([b"data: " + b"y" * 500_000 + b"\n\n"])
            await _until(lambda: xlen(key) == 2)
            # A read of Redis that was on its way when the reader left comes back now.
            await b.store._sync(mirror)  # type: ignore[arg-type]
            return held, b.held
        finally:
            await asyncio.wait_for(b.close(), CLOSE_BOUND)
            await asyncio.wait_for(a.close(), CLOSE_BOUND)

    held, after = lt.run(scenario(), timeout=30)
    assert held > 0 and after == 0


def test_mirrors_give_way_before_a_generation_here_is_stopped(
        redis_server: RedisServer, lt: LoopThread) -> None:
    """An ended mirror held by a reader that never reads fills B's budget; B's own live stream
    then grows: the mirror is let go (its reader told ``evicted``), the generation goes on (a
    copy can be read from Redis again, a generation cannot)."""

    async def scenario() -> tuple[str | None, bool, bytes]:
        loop = asyncio.get_running_loop()
        a = await RedisStore.connect(redis_server.url, loop, ResumeLimits())
        b = await RedisStore.connect(redis_server.url, loop, ResumeLimits(memory=1_000_000))
        try:
            stream = a.create(None)
            assert stream is not None
            stream.feed([b"data: " + b"x" * 40_000 + b"\n\n"] * 20)
            stream.complete()
            meta = b"relay:rs:" + stream.id.encode() + b":meta"
            await _until(lambda: redis_server.client().hget(meta, "status") == b"completed")
            mirror = await b.find(stream.id)
            assert mirror is not None and mirror.status == "completed"
            _, transport = _reader(mirror, reading=False)
            assert b.held > 800_000
            own = b.create(None)
            assert own is not None
            own.feed([b"data: " + b"y" * 250_000 + b"\n\n"])
            return own.status, b.store._mirrors.get(stream.id) is mirror, bytes(transport.take())
        finally:
            await asyncio.wait_for(b.close(), CLOSE_BOUND)
            await asyncio.wait_for(a.close(), CLOSE_BOUND)

    status, kept, told = lt.run(scenario(), timeout=30)
    assert status is None and not kept
    assert b'"code": "evicted"' in told or b'"code":"evicted"' in told
    assert told.endswith(b"0\r\n\r\n")


def test_a_mirrors_readers_at_a_drain_resume_elsewhere_and_the_generation_goes_on(
        redis_server: RedisServer, lt: LoopThread) -> None:
    """The mirrors' host is the store: when B drains, a reader of a mirror is told where to
    resume and let go; one still there at the drain's timeout is cut. The stream is A's: it
    stays live (B never ends a generation it does not own)."""

    async def scenario() -> tuple[bytes, bool, bool, str | None]:
        loop = asyncio.get_running_loop()
        a = await RedisStore.connect(redis_server.url, loop, ResumeLimits())
        b = await RedisStore.connect(redis_server.url, loop, ResumeLimits())
        try:
            stream = a.create(None)
            assert stream is not None
            stream.feed([b"data: one\n\n"])
            meta = b"relay:rs:" + stream.id.encode() + b":meta"
            await _until(lambda: redis_server.client().hget(meta, "count") == b"1")
            mirror = await b.find(stream.id)
            assert mirror is not None and mirror is not stream
            draining, told = _reader(mirror)
            draining.on_draining()
            staying, cut = _reader(mirror)
            staying.on_shutdown()
            return bytes(told.take()), draining in mirror.followers, cut.aborted, stream.status
        finally:
            await asyncio.wait_for(b.close(), CLOSE_BOUND)
            await asyncio.wait_for(a.close(), CLOSE_BOUND)

    told, still_reading, cut, status = lt.run(scenario(), timeout=30)
    assert b"event: relay.resume" in told and b'"last_event_id": "1"' in told
    assert not still_reading and cut and status is None
