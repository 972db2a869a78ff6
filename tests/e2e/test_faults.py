"""Faults on either side, each with its documented outcome, over real sockets.

Upstream faults also covered elsewhere: refused (test_stream: 502), never answers (504), stalls
mid-stream (test_upstream: final error event), malformed status line (502), broken chunking
(error event), gzip relayed intact without heartbeats (test_stream), idle pooled connection
closed by the upstream (test_stream: not reused).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    OK_JSON,
    SSE_HEAD,
    H11Client,
    LoopThread,
    Received,
    ScriptedUpstream,
    UpstreamConn,
    answering,
    chat_body,
    chunked,
    connect,
    read_until_close,
    recv_until,
    scrape,
    sse_data,
    unaccepting_port,
    wait_until,
)


def test_upstream_reset_mid_stream_ends_with_error_event(scripted: ScriptedFactory,
                                                         make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD + chunked(b'data: {"n": 1}\n\n') + chunked(b'data: {"n": 2}\n\n'))
        await c.writer.drain()
        sock = c.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.writer.transport.abort()  # RST, not FIN

    up = scripted(script)
    relay = make_relay(up.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    reply = client.read_reply()  # a complete chunked body: the error is inside the stream
    events = sse_data(reply.body)
    assert events[:2] == [b'{"n": 1}', b'{"n": 2}']
    error = json.loads(events[2])["error"]
    assert error["code"] == "upstream_closed"


def test_gzip_body_relayed_intact_and_labelled(scripted: ScriptedFactory,
                                               make_relay: RelayFactory) -> None:
    payload = b"".join(b'data: {"n": %d}\n\n' % i for i in range(50)) + b"data: [DONE]\n\n"
    packed = gzip.compress(payload)

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        assert c.headers[b"accept-encoding"] == b"identity"  # the relay asks for plain bytes
        c.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip"
                b"\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(0, len(packed), 37):
            c.write(chunked(packed[i:i + 37]))
        c.write(b"0\r\n\r\n")

    up = scripted(script)
    relay = make_relay(up.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(),
                [(b"accept-encoding", b"gzip")])
    reply = client.read_reply()
    assert reply.headers[b"content-encoding"] == b"gzip"
    assert reply.body == packed and gzip.decompress(reply.body) == payload


def test_pooled_connection_dying_after_the_request_was_sent_is_not_retried(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    """The request went out on a reused connection and the upstream closed without a byte of
    answer: a POST may have had effects, so the relay answers 502 and does not send it again.
    (Retries happen only before a request is sent: a pooled connection found closed is skipped
    for a fresh one, see test_stream.)"""
    seen: list[Received] = []

    async def die(conn: UpstreamConn) -> bool:
        return b"/v1/die" not in conn.request_line  # False: close without answering

    up = scripted(answering(seen, before_reply=die))
    relay = make_relay(up.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/first", b"{}")
    assert client.read_reply().status == 200
    client.next_cycle()
    client.send(b"POST", b"/v1/die", b"{}")
    reply = client.read_reply()
    assert reply.status == 502 and b"upstream_closed" in reply.body
    client.next_cycle()
    client.send(b"POST", b"/v1/after", b"{}")
    assert client.read_reply().status == 200
    assert [r.request_line.split()[1] for r in seen] == [b"/v1/first", b"/v1/die", b"/v1/after"]
    assert len(up.connections) == 2  # the dead one was not reused


async def _one_event_then_wait(c: UpstreamConn) -> None:
    """An upstream that sends a head and one event, then stays silent until closed."""
    await c.read_request()
    c.write(SSE_HEAD + chunked(b'data: {"n": 1}\n\n'))
    await c.watch_close()


def _closed_soon_after(up: ScriptedUpstream, left: float) -> bool:
    """The upstream connection was closed within 200 ms of the client leaving."""
    assert up.connections[0].closed.wait(2)
    closed_at = up.connections[0].closed_at
    return closed_at is not None and closed_at - left < 0.200


def test_client_leaving_before_the_upstream_answered_closes_it(scripted: ScriptedFactory,
                                                               make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        await c.watch_close()  # the upstream is still "thinking": no byte of answer yet

    up = scripted(script)
    relay = make_relay(up.url)
    sock = connect(relay.port)
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body())
    assert wait_until(lambda: len(up.connections) == 1 and bool(up.connections[0].head))
    sock.close()
    assert _closed_soon_after(up, time.monotonic())


def test_client_leaving_during_upstream_silence_closes_it(scripted: ScriptedFactory,
                                                          make_relay: RelayFactory) -> None:
    """Mid-stream, while the upstream sends nothing: the relay notices the client's EOF itself
    (it keeps reading the client), not at its next write."""
    up = scripted(_one_event_then_wait)
    relay = make_relay(up.url)
    sock = connect(relay.port)
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body())
    recv_until(sock, lambda got: b"data: " in got)
    sock.close()
    assert _closed_soon_after(up, time.monotonic())


def test_half_close_mid_response_counts_as_gone(scripted: ScriptedFactory,
                                                make_relay: RelayFactory,
                                                lt: LoopThread) -> None:
    """shutdown(SHUT_WR) while a response is in flight: like nginx (its 499), the relay takes
    the client as gone and closes the upstream at once, so no tokens are generated for nobody.
    A half-close after the responses loses nothing: see
    test_half_close_after_the_responses_ends_cleanly."""
    up = scripted(_one_event_then_wait)
    relay = make_relay(up.url)
    sock = connect(relay.port)
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body())
    first = recv_until(sock, lambda got: b"data: " in got)  # the response is in flight
    sock.shutdown(socket.SHUT_WR)
    assert up.connections[0].closed.wait(2)
    rest = read_until_close(sock)  # what was sent, then the end: never a clean last chunk
    assert first.startswith(b"HTTP/1.1 200 ") and not rest.endswith(b"0\r\n\r\n")
    assert lt.call(lambda: relay.pool.idle_count) == 0


def test_half_close_after_the_responses_ends_cleanly(scripted: ScriptedFactory,
                                                      make_relay: RelayFactory) -> None:
    """Pipelined requests are all answered; a half-close once they are closes the connection
    cleanly. (A half-close read while a response is still in flight counts as gone, above: the
    relay cannot tell it from a client that left, and nginx decides the same way.)"""
    up = scripted(answering())
    relay = make_relay(up.url)
    sock = connect(relay.port)
    one = b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}"
    sock.sendall(one * 3)
    replies = recv_until(sock, lambda got: got.count(b"{}") == 3)
    sock.shutdown(socket.SHUT_WR)
    assert read_until_close(sock) == b""
    assert replies.count(b"HTTP/1.1 200 ") == 3


def test_client_leaving_while_the_upstream_connects_abandons_it(make_relay: RelayFactory,
                                                                lt: LoopThread) -> None:
    """The upstream's accept queue is full, so the relay's connect hangs; the client leaves:
    the connect is abandoned at once (nothing opened, nothing sent, nothing counted open)."""
    with unaccepting_port() as port:
        relay = make_relay(f"http://127.0.0.1:{port}")
        sock = connect(relay.port)
        H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body())
        assert wait_until(lambda: lt.call(lambda: relay.pool.open) == 1)  # connecting
        sock.close()
        assert wait_until(lambda: lt.call(lambda: relay.pool.open) == 0, 2)
        assert lt.call(lambda: relay.pool.created) == 0


class _AcceptAndClose(asyncio.Protocol):
    """An upstream that accepts a connection and closes it at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _concurrently(port: int, clients: int, per_client: int,
                  targets: list[bytes] | None = None) -> list[int]:
    """``clients`` threads, each sending ``per_client`` requests on its own connection (a new
    one when the relay closed it); every status they got."""
    statuses: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        h = H11Client(connect(port, timeout=30))
        for i in range(per_client):
            target = targets[(n * per_client + i) % len(targets)] if targets else b"/v1/models"
            h.send(b"POST", target, b"{}")
            reply = h.read_reply()
            with lock:
                statuses.append(reply.status)
            if reply.headers.get(b"connection") == b"close" or h.conn.our_state is h11.MUST_CLOSE:
                h = H11Client(connect(port, timeout=30))
            else:
                h.next_cycle()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def _log_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_upstream_that_accepts_and_closes_gives_502s_never_500s(
        make_relay: RelayFactory, lt: LoopThread, tmp_path: Path) -> None:
    """50 clients x 10 requests while the upstream accepts and closes every connection at once
    (the connect finishes, then the connection is gone before the request is sent): every
    request gets a 502, one access-log line each, and the gauges come back to zero."""
    server = lt.run(_start(lambda: asyncio.get_running_loop().create_server(
        _AcceptAndClose, "127.0.0.1", 0)))
    port = server.sockets[0].getsockname()[1]
    log = tmp_path / "access.log"
    relay = make_relay(f"http://127.0.0.1:{port}", access_log=str(log))
    statuses = _concurrently(relay.port, 50, 10)
    assert len(statuses) == 500 and set(statuses) == {502}, set(statuses)
    metrics = scrape(relay.port)
    assert metrics["relay_active_streams"] == 0
    assert metrics['relay_requests_total{route="/v1",status="502"}'] == 500
    assert wait_until(lambda: len(_log_lines(log)) == 501)  # (and the scrape's own line)
    assert {line["status"] for line in _log_lines(log)[:-1]} == {502}
    lt.call(server.close)


async def _start(make: Callable[[], Awaitable[asyncio.Server]]) -> asyncio.Server:
    return await make()


BEHAVIOURS = [b"/v1/ok", b"/v1/close", b"/v1/reset", b"/v1/stream", b"/v1/cut", b"/v1/slow",
              b"/v1/bad"]


async def _behave(c: UpstreamConn) -> None:
    while await c.read_request():
        path = c.request_line.split()[1]
        if path == b"/v1/close":
            return
        if path == b"/v1/reset":
            c.writer.transport.abort()
            return
        if path == b"/v1/slow":
            await asyncio.sleep(0.05)
        if path in (b"/v1/stream", b"/v1/cut"):
            c.write(SSE_HEAD + chunked(b"data: 1\n\n", b"data: 2\n\n"))
            if path == b"/v1/cut":
                await c.writer.drain()
                c.writer.transport.abort()
                return
            c.write(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        elif path == b"/v1/bad":
            c.write(b"HTTP/1.1 ???\r\n\r\n")
            return
        else:
            c.write(OK_JSON)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(targets=st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=20))
def test_every_request_ends_once_under_concurrency(targets: list[bytes], tmp_path_factory: Any,
                                                   scripted: ScriptedFactory,
                                                   make_relay: RelayFactory) -> None:
    """Whatever mix of upstream behaviours, 25 concurrent clients: every request gets an answer
    that is not a 500, exactly one access-log line, and no gauge stays up."""
    log = tmp_path_factory.mktemp("log") / "access.log"
    relay = make_relay(scripted(_behave).url, access_log=str(log))
    statuses = _concurrently(relay.port, 25, 2, targets)
    assert len(statuses) == 50 and 500 not in statuses
    assert set(statuses) <= {200, 502}
    metrics = scrape(relay.port)
    assert metrics["relay_active_streams"] == 0
    assert wait_until(lambda: len(_log_lines(log)) == 51)
