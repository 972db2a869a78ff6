"""serve_events: a local SSE endpoint from an async generator, over real sockets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from relay.app import Listener, listen
from relay.config import Limits, Timeouts
from relay.eventsource import HEARTBEAT, serve_events
from relay.server import Exchange
from relay.sse import Event, SSEParser

from .helpers import H11Client, LoopThread, connect, recv_until, wait_until

Endpoint = tuple[int, threading.Event, list[BaseException | None]]


@pytest.fixture
def endpoint(lt: LoopThread) -> Iterator[Endpoint]:
    """An endpoint streaming a, (0.5 s of silence), b, raw; heartbeat every 0.2 s; retry 3000.
    ``closed`` is set when the generator is closed (end of stream or client gone); ``ended``
    gets how each handler ended (None, or the exception it raised)."""
    closed = threading.Event()
    ended: list[BaseException | None] = []

    async def source(slow: bool) -> AsyncIterator[Event | bytes]:
        try:
            yield Event("a")
            await asyncio.sleep(30 if slow else 0.5)
            yield Event("b", event="x", id="7")
            yield b"data: raw\n\n"
        finally:
            closed.set()

    async def handler(ex: Exchange) -> None:
        slow = ex.request.path == b"/slow"
        try:
            await serve_events(ex, source(slow), retry=3000, heartbeat=0.2)
        except BaseException as exc:
            ended.append(exc)
            raise
        ended.append(None)

    listener: Listener = lt.run(listen(handler, "127.0.0.1", 0, Limits(), Timeouts()))
    yield listener.port, closed, ended
    lt.call(listener.close)


def test_events_retry_and_heartbeats(endpoint: Endpoint) -> None:
    port, closed, ended = endpoint
    client = H11Client(connect(port))
    client.send(b"GET", b"/events")
    reply = client.read_reply()
    assert reply.headers[b"content-type"] == b"text/event-stream"
    body = reply.body
    assert body.startswith(b"retry: 3000\n\ndata: a\n\n")
    _, rest = body.split(b"data: a\n\n", 1)
    beats, _ = rest.split(b"event: x", 1)
    assert beats.count(HEARTBEAT) >= 1 and beats == HEARTBEAT * beats.count(HEARTBEAT)
    parser = SSEParser()
    assert parser.feed(body) == [Event("a"), Event("b", "x", "7"), Event("raw", id="7")]
    assert parser.retry == 3000
    assert closed.wait(2)
    assert wait_until(lambda: ended == [None], 2)


def test_client_leaving_closes_the_source(endpoint: Endpoint) -> None:
    port, closed, ended = endpoint
    sock = connect(port)
    H11Client(sock).send(b"GET", b"/slow")
    recv_until(sock, lambda got: b"data: a" in got)  # head, retry and event may come apart
    sock.close()
    assert closed.wait(2)  # the generator was closed, not left sleeping for 30 s
    # ...and the handler ended by the server's cancellation, not by a failure while closing
    # the source (aclose() on a generator whose step is still running raises RuntimeError).
    assert wait_until(lambda: bool(ended), 2)
    assert isinstance(ended[0], asyncio.CancelledError), ended
