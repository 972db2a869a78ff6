"""Benchmark F's load: subscriber connections that count events as they read them, and
keep-alive publishers at a steady rate that wait for each answer."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .hubs import Hub
from .wire import Tally, event_data, parse_response, scan

P = TypeVar("P", bound=asyncio.Protocol)


@dataclass
class Load:
    """One scenario's load: ``per_channel`` subscribers on each of ``channels``, ``rate``
    deliveries per second of ``size``-byte events for ``duration`` seconds."""

    channels: int
    per_channel: int
    rate: float  # deliveries per second
    duration: float
    size: int
    idle: float  # seconds connected and idle before RSS is read

    @property
    def publish_rate(self) -> float:
        return self.rate / self.per_channel


class Subscriber(asyncio.Protocol):
    """One subscriber connection; ``ready`` resolves with the response status."""

    def __init__(self, request: bytes, channel: int, tally: Tally,
                 ready: asyncio.Future[int]) -> None:
        self.request, self.channel, self.tally, self.ready = request, channel, tally, ready
        self.transport: asyncio.Transport | None = None
        self.head = False
        self.tail = b""
        self.received = 0  # this subscriber's events: who missed what

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.tail + data if self.tail else data
        if not self.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.tail = buf
                return
            status = int(buf[9:12])
            if not self.ready.done():
                self.ready.set_result(status)
            if status != 200:
                self.close()
                return
            self.head = True
            self.tally.subscribed += 1
            self.tally.live[self.channel] += 1
            buf = buf[end + 4:]
        before = self.tally.received
        keep = scan(buf, now, self.tally)
        self.received += self.tally.received - before
        self.tail = buf[keep:] if keep < len(buf) else b""

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the response"))
        if self.head:
            self.head = False
            self.tally.live[self.channel] -= 1
            if not self.tally.closing:
                self.tally.drops += 1


class Publisher(asyncio.Protocol):
    """One keep-alive publishing connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is not None:
            self.buf = self.buf[parsed[1]:]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(parsed[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("publisher connection lost"))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def factory(proto: P) -> Callable[[], P]:
    """A protocol factory answering ``proto`` (the loop's create_connection wants one)."""
    return lambda: proto


async def connect_subscribers(hub: Hub, names: list[str], per_channel: int, tally: Tally,
                              timeout: float) -> list[Subscriber]:
    """``per_channel`` subscribers on each channel, at most 256 connecting at once (a 10k storm
    overflows accept queues; SYN retries would then dominate)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(256)
    subs: list[Subscriber] = []
    deadline = loop.time() + timeout

    async def one(index: int) -> None:
        request = hub.sub_request(names[index])
        async with gate:
            for _ in range(3):  # a refused connect is retried: the backlog was full
                ready: asyncio.Future[int] = loop.create_future()
                sub = Subscriber(request, index, tally, ready)
                try:
                    await loop.create_connection(factory(sub), "127.0.0.1", hub.port)
                    status = await asyncio.wait_for(ready, max(0.1, deadline - loop.time()))
                except (OSError, TimeoutError) as exc:
                    tally.error(f"connect: {type(exc).__name__}")
                    sub.close()
                    await asyncio.sleep(0.1)
                    continue
                subs.append(sub)
                if status != 200:
                    tally.error(f"subscribe status {status}")
                return

    await asyncio.gather(*(one(c) for c in range(len(names)) for _ in range(per_channel)))
    return subs


@dataclass
class Published:
    """What a publishing run sent, what the hub accepted, and the deliveries that makes."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    expected: int = 0  # deliveries: live subscribers of each published channel, summed
    seconds: float | None = None  # spent publishing, when not the whole window

    def add(self, other: Published) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.errors += other.errors
        self.expected += other.expected


async def publish(hub: Hub, names: list[str], rate: float, duration: float, size: int,
                  tally: Tally) -> Published:
    """``rate`` publishes per second for ``duration`` seconds, round-robin over the channels,
    from a few keep-alive connections (a slow hub then gets fewer publishes, never a backlog
    of them: the achieved rate is reported)."""
    loop = asyncio.get_running_loop()
    # Each connection waits for its answer: enough of them that round trips slowed by this
    # busy loop (it reads the subscribers) do not cap the rate; a saturated hub still sees few.
    workers = max(2, min(256, int(rate // 25)))
    total = max(1, int(rate * duration))
    out = Published()
    start = loop.time() + 0.05
    stop_at = start + duration

    async def worker(w: int) -> None:
        conn: Publisher | None = None
        for i in range(w, total, workers):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() > stop_at:
                break
            conn = await publish_one(hub, conn, names, i % len(names), size, tally, out)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return out


async def publish_one(hub: Hub, conn: Publisher | None, names: list[str], channel: int,
                      size: int, tally: Tally, out: Published) -> Publisher | None:
    """One publish to ``names[channel]`` on ``conn`` (a new connection when there is none or it
    was lost), counted in ``out``; returns the connection to go on with (None after an error).
    Its expected deliveries are the channel's subscribers when it was sent."""
    live = tally.live[channel]
    out.sent += 1
    try:
        if conn is None or conn.lost:
            conn = Publisher()
            await asyncio.get_running_loop().create_connection(factory(conn), "127.0.0.1",
                                                               hub.port)
        status = await asyncio.wait_for(
            conn.send(hub.pub_request(names[channel], event_data(size))), 10)
    except (OSError, TimeoutError):
        out.errors += 1
        return None
    if 200 <= status < 300:
        out.ok += 1
        out.expected += live
    else:
        out.errors += 1
    return conn
