"""Upstream connections and the pool: TLS verification, idle expiry, what is never reused."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.config import Limits, Timeouts
from relay.mock import MockUpstream, completion_text
from relay.net.listener import Listener, listen

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    OK_JSON,
    H11Client,
    LoopThread,
    Received,
    UpstreamConn,
    answering,
    chat_body,
    connect,
    sse_data,
    wait_until,
)
from ..support.tls import TLSFiles, make_tls


@pytest.fixture
def tls_mock(lt: LoopThread, tls: TLSFiles) -> Iterator[tuple[int, Path]]:
    """The mock upstream over TLS with a certificate for 127.0.0.1 from a private CA."""
    listener: Listener = lt.run(listen(MockUpstream(), "127.0.0.1", 0, Limits(), Timeouts(),
                                       tls.server_context()))
    yield listener.port, tls.ca_pem
    lt.call(listener.close)


def test_tls_upstream_with_private_ca(tls_mock: tuple[int, Path],
                                      make_relay: RelayFactory) -> None:
    port, ca_file = tls_mock
    relay = make_relay(f"https://127.0.0.1:{port}", upstream_ca=str(ca_file))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(6))
    reply = client.read_reply()
    assert reply.status == 200
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                   for d in sse_data(reply.body)[:-1])
    assert text == completion_text(6)


def test_tls_upstream_with_wrong_ca_is_502(tls_mock: tuple[int, Path],
                                           make_relay: RelayFactory, lt: LoopThread) -> None:
    port, _ = tls_mock
    relay = make_relay(f"https://127.0.0.1:{port}")  # certifi's roots: must not trust it
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(6))
    reply = client.read_reply()
    assert reply.status == 502
    err = json.loads(reply.body)["error"]
    assert err["code"] == "upstream_connect_failed"
    assert "TLS verification" in err["message"]
    # the failed connect (its protocol was made, the handshake failed) is counted closed once
    assert lt.call(lambda: relay.pool.open) == 0


def test_tls_hostname_is_checked(lt: LoopThread, tmp_path: Path,
                                 make_relay: RelayFactory) -> None:
    """A certificate from a trusted CA but for another name is refused too."""
    other = make_tls(tmp_path, "other.example")
    listener: Listener = lt.run(listen(MockUpstream(), "127.0.0.1", 0, Limits(), Timeouts(),
                                       other.server_context()))
    try:
        relay = make_relay(f"https://127.0.0.1:{listener.port}", upstream_ca=str(other.ca_pem))
        client = H11Client(connect(relay.port))
        client.send(b"GET", b"/v1/models")
        reply = client.read_reply()
        assert reply.status == 502
        assert "TLS verification" in json.loads(reply.body)["error"]["message"]
    finally:
        lt.call(listener.close)


def test_idle_upstream_connections_expire(make_relay: RelayFactory, lt: LoopThread) -> None:
    relay = make_relay(limits=Limits(pool_idle_timeout=0.2))
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/v1/models")
    assert client.read_reply().status == 200
    assert lt.call(lambda: relay.pool.idle_count) == 1
    assert wait_until(lambda: lt.call(lambda: relay.pool.idle_count) == 0, 3)


def test_pool_keeps_at_most_pool_size_idle(make_relay: RelayFactory, lt: LoopThread) -> None:
    relay = make_relay(limits=Limits(pool_size=2))
    socks = [connect(relay.port) for _ in range(4)]
    clients = [H11Client(s) for s in socks]
    for c in clients:  # four concurrent streams need four upstream connections
        c.send(b"POST", b"/v1/chat/completions", chat_body(20),
               [(b"x-mock-delay-ms", b"20")])
    for c in clients:
        assert c.read_reply().status == 200
    assert lt.call(lambda: relay.pool.created) == 4
    assert lt.call(lambda: relay.pool.idle_count) == 2


def test_upstream_cap_queues_then_503(scripted: ScriptedFactory, make_relay: RelayFactory,
                                      lt: LoopThread) -> None:
    """max_upstream=1: a second request waits for the one connection; it is served when that
    connection comes back to the pool, or answered 503 when the queue timeout passes first."""
    release = threading.Event()
    seen: list[Received] = []

    async def hold(conn: UpstreamConn) -> bool:
        if conn.request_line.startswith(b"POST /v1/hold"):
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        return True

    up = scripted(answering(seen, before_reply=hold))
    relay = make_relay(up.url, limits=Limits(max_upstream=1), timeouts=Timeouts(queue=0.5))
    holder = H11Client(connect(relay.port))
    holder.send(b"POST", b"/v1/hold", b"{}")
    assert wait_until(lambda: len(seen) == 1)

    late = H11Client(connect(relay.port))  # queues, and times out
    late.send(b"POST", b"/v1/late", b"{}")
    reply = late.read_reply()
    assert reply.status == 503 and reply.headers[b"retry-after"] == b"1"
    assert b"upstream_busy" in reply.body

    queued = H11Client(connect(relay.port))  # queues, and is served once the holder is done
    queued.send(b"POST", b"/v1/queued", b"{}")
    assert wait_until(lambda: lt.call(lambda: len(relay.pool._waiters)) == 1)
    release.set()
    assert holder.read_reply().status == 200
    assert queued.read_reply().status == 200
    assert [r.request_line.split()[1] for r in seen] == [b"/v1/hold", b"/v1/queued"]
    assert len(up.connections) == 1  # the queued request reused the one connection


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}X",  # a stray byte, in the same segment
    b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstale!",
    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 6\r\n\r\nstale!",
])
def test_a_connection_that_is_out_of_step_serves_no_one_else(
        answer: bytes, scripted: ScriptedFactory, make_relay: RelayFactory,
        lt: LoopThread) -> None:
    """The upstream keeps the socket open after a response that forbids reuse, or after bytes
    past its end (RFC 9112 6.3): the next request must go on a new connection and must never
    get those bytes as its answer."""
    count = [0]

    async def script(c: UpstreamConn) -> None:
        while await c.read_request():
            count[0] += 1
            c.write(answer if count[0] == 1 else OK_JSON)
            await c.writer.drain()

    up = scripted(script)
    relay = make_relay(up.url)
    for n in (1, 2):
        client = H11Client(connect(relay.port))
        client.send(b"GET", b"/v1/models")
        reply = client.read_reply()
        assert b"stale" not in reply.body
        client.sock.close()
        assert wait_until(lambda n=n: len(up.connections) == n, 2)  # type: ignore[misc]
    assert reply.body == b"{}"
    assert lt.call(lambda: relay.pool.created) == 2
