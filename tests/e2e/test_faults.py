"""Faults on either side, each with its documented outcome, over real sockets.

Upstream faults also covered elsewhere: refused (test_stream: 502), never answers (504), stalls
mid-stream (test_upstream: final error event), malformed status line (502), broken chunking
(error event), gzip relayed intact without heartbeats (test_stream), idle pooled connection
closed by the upstream (test_stream: not reused).
"""

from __future__ import annotations

import gzip
import json
import socket
import time

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
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
    assert wait_until(lambda: len(up.connections) == 1)
    sock.shutdown(socket.SHUT_WR)
    assert up.connections[0].closed.wait(2)
    assert read_until_close(sock).startswith(b"HTTP/1.1 200 ")  # what was sent, then the end
    assert lt.call(lambda: relay.pool.idle_count) == 0


def test_half_close_after_the_responses_ends_cleanly(scripted: ScriptedFactory,
                                                      make_relay: RelayFactory) -> None:
    """Pipelined requests are all answered; a half-close once they are closes the connection
    cleanly. (A half-close read while a response is still in flight counts as gone, above: the
    relay cannot tell it from a client that left, and nginx decides the same way.)"""
    up = scripted(answering())
    relay = make_relay(up.url)
    sock = connect(relay.port)
    one = b"POST /v1/x HTTP/1.1\r\nhost: r\r\ncontent-length: 2\r\n\r\n{}"
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
