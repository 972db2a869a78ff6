"""The listener: its registry of connections, and a graceful shutdown over real sockets (the same
with real processes and signals: tests/e2e/test_drain.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

from relay.net.listener import Connections

from ..conftest import MockServer, RelayFactory
from ..support import H11Client, LoopThread, chat_body, connect, sse_data, wait_until


def test_wait_empty_returns_when_the_last_connection_goes() -> None:
    async def main() -> None:
        conns = Connections()
        a, b = object(), object()
        conns.add(a)  # type: ignore[arg-type]
        conns.add(b)  # type: ignore[arg-type]
        assert not await conns.wait_empty(0.01)
        waiter = asyncio.ensure_future(conns.wait_empty(10))
        await asyncio.sleep(0)
        conns.discard(a)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert not waiter.done()
        conns.discard(b)  # type: ignore[arg-type]
        assert await asyncio.wait_for(waiter, 1)
        assert await conns.wait_empty(0) and len(conns) == 0

    asyncio.run(main())


def _shutdown_in_background(lt: LoopThread, relay: object, grace: float) -> list[bool]:
    result: list[bool] = []

    def run() -> None:
        result.append(lt.run(relay.shutdown(grace)))  # type: ignore[attr-defined]

    threading.Thread(target=run, daemon=True).start()
    return result


def test_shutdown_closes_idle_connections_and_lets_streams_finish(
        mock_server: MockServer, make_relay: RelayFactory, lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    idle = H11Client(connect(relay.port))
    idle.send(b"GET", b"/healthz")
    assert idle.read_reply().status == 200
    busy = H11Client(connect(relay.port))
    busy.send(b"POST", b"/v1/chat/completions", chat_body(10), [(b"x-mock-delay-ms", b"30")])
    assert wait_until(lambda: mock_server.mock.requests == 1)
    result = _shutdown_in_background(lt, relay, 10)
    idle.sock.settimeout(5)
    assert idle.sock.recv(10) == b""  # closed at once
    reply = busy.read_reply()
    assert sse_data(reply.body)[-1] == b"[DONE]"  # finished, cleanly
    assert wait_until(lambda: result == [True])
    with socket.socket() as refused:
        assert refused.connect_ex(("127.0.0.1", relay.port)) != 0


def test_at_the_end_of_the_grace_streams_get_an_error_event(
        mock_server: MockServer, make_relay: RelayFactory, lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    busy = H11Client(connect(relay.port))
    busy.send(b"POST", b"/v1/chat/completions", chat_body(1000), [(b"x-mock-delay-ms", b"50")])
    assert wait_until(lambda: mock_server.mock.requests == 1)
    result = _shutdown_in_background(lt, relay, 0.3)
    reply = busy.read_reply()  # a clean chunked end, after the error event
    last = json.loads(sse_data(reply.body)[-1])
    assert last["error"]["code"] == "relay_shutdown" and last["error"]["type"] == "server_error"
    assert wait_until(lambda: result == [False])
