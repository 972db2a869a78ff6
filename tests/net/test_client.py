"""ClientConnection: over real sockets (keep-alive, pipelining, HTTP/1.0, 100-continue, limits),
then alone on the fake transport and the fake clock, where every timer is tested exactly and the
handler's failures are provoked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import h11
import pytest

from relay.config import KIB, MIB, Limits, Timeouts
from relay.mock import completion_text
from relay.net.client import ClientConnection, State
from relay.net.exchange import LINGER, Exchange, Handler

from ..conftest import MockServer, RelayFactory, ScriptedFactory
from ..support import (
    OPEN_SOCKETS,
    FakeLoop,
    FakeTransport,
    H11Client,
    LoopThread,
    UpstreamConn,
    chat_body,
    connect,
    read_until_close,
    recv_until,
    sse_data,
    wait_until,
)


def test_200_sequential_requests_on_one_connection(mock_server: MockServer,
                                                   make_relay: RelayFactory,
                                                   lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    for i in range(200):
        stream = i % 2 == 0
        client.send(b"POST", b"/v1/chat/completions", chat_body(3, stream=stream))
        reply = client.read_reply()
        assert reply.status == 200
        if stream:
            assert reply.headers[b"transfer-encoding"] == b"chunked"
            assert sse_data(reply.body)[-1] == b"[DONE]"
        else:
            assert json.loads(reply.body)["object"] == "chat.completion"
        client.next_cycle()
    # One client connection and one upstream connection served all 200.
    assert mock_server.mock.requests == 200
    assert lt.call(lambda: relay.pool.created) == 1


def test_20_pipelined_requests_answered_in_order(mock_server: MockServer,
                                                 make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    bodies = [chat_body(n + 1, stream=n % 3 != 0) for n in range(20)]
    writer = h11.Connection(h11.CLIENT)
    raw = b""
    for body in bodies:  # all 20 requests in one write, before reading anything
        hdrs = [(b"host", b"localhost"), (b"content-length", b"%d" % len(body))]
        raw += writer.send(h11.Request(method=b"POST", target=b"/v1/chat/completions",
                                       headers=hdrs)) or b""
        raw += (writer.send(h11.Data(data=body)) or b"") + (writer.send(h11.EndOfMessage()) or b"")
        writer = h11.Connection(h11.CLIENT)  # a fresh one: we never read replies with it
    sock.sendall(raw)
    client = H11Client(sock)
    for n, body in enumerate(bodies):
        client.request_bytes(b"POST", b"/v1/chat/completions", body)  # advance h11's state only
        reply = client.read_reply()
        assert reply.status == 200
        if n % 3 != 0:
            text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                           for d in sse_data(reply.body)[:-1])
        else:
            text = json.loads(reply.body)["choices"][0]["message"]["content"]
        assert text == completion_text(n + 1), f"reply {n} out of order"
        client.next_cycle()


def test_http10_client_gets_close_delimited_stream(mock_server: MockServer,
                                                   make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    body = chat_body(5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
    raw = read_until_close(sock)  # the relay ends the body by closing
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert payload.endswith(b"data: [DONE]\n\n")
    assert len(sse_data(payload)) == 8  # role + 5 + finish + [DONE], with no chunk framing


def test_expect_100_continue_answered_at_once(mock_server: MockServer,
                                              make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port, timeout=2)
    body = chat_body(2, stream=False)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
                 b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body))
    assert sock.recv(100).startswith(b"HTTP/1.1 100 ")  # before we sent the body
    sock.sendall(body)
    assert b"200 OK" in sock.recv(65536)


def test_body_over_limit_gets_413_and_close(mock_server: MockServer,
                                            make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_body_size=1000))
    sock = connect(relay.port)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
                 b"content-length: 5000\r\n\r\n")
    raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["type"] == "invalid_request_error"
    assert mock_server.mock.requests == 0


def test_chunked_body_over_limit_gets_413(mock_server: MockServer,
                                          make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_body_size=1000))
    sock = connect(relay.port)
    sock.sendall(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
                 + b"%x\r\n%s\r\n" % (1500, b"a" * 1500))
    assert read_until_close(sock).startswith(b"HTTP/1.1 413 ")
    assert mock_server.mock.requests == 0


def test_garbage_gets_400_and_close(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in raw.lower()
    assert mock_server.mock.requests == 0


def test_oversized_head_gets_431(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_head_size=4096))
    sock = connect(relay.port)
    with contextlib.suppress(ConnectionError):
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: localhost\r\nx-big: " + b"a" * 8192)
    assert read_until_close(sock).startswith(b"HTTP/1.1 431 ")
    assert mock_server.mock.requests == 0


def test_idle_keepalive_connection_closed_after_timeout(make_relay: RelayFactory) -> None:
    relay = make_relay(timeouts=Timeouts(keepalive=0.2))
    sock = connect(relay.port, timeout=5)
    client = H11Client(sock)
    client.send(b"GET", b"/healthz")
    assert client.read_reply().status == 200
    sock.settimeout(3)
    assert sock.recv(10) == b""  # the relay closed the idle connection


def test_over_the_connection_cap_gets_503_with_retry_after(mock_server: MockServer,
                                                          make_relay: RelayFactory,
                                                          lt: LoopThread) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_connections=2))
    held = [connect(relay.port), connect(relay.port)]
    assert wait_until(lambda: lt.call(lambda: len(relay.listener.connections)) == 2)
    extra = connect(relay.port, timeout=5)
    H11Client(extra).send(b"POST", b"/v1/chat/completions", chat_body(2))
    reply = read_until_close(extra)
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 1\r\n" in reply.lower() and b"connection limit" in reply
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["type"] == "server_error"
    assert mock_server.mock.requests == 0
    held.pop().close()  # room again: the next connection is served
    assert wait_until(lambda: lt.call(lambda: len(relay.listener.connections)) == 1)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    assert client.read_reply().status == 200

def test_client_that_stops_reading_is_cut_after_send_timeout(scripted: ScriptedFactory,
                                                             make_relay: RelayFactory) -> None:
    async def endless(conn: UpstreamConn) -> None:
        await conn.read_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                          b"transfer-encoding: chunked\r\n\r\n")
        event = b"data: " + b"x" * 1000 + b"\n\n"
        framed = b"%x\r\n%s\r\n" % (len(event), event)
        try:
            while True:
                conn.writer.write(framed * 16)
                await conn.writer.drain()
        except ConnectionError:
            conn.closed.set()  # the relay closed (reset) the upstream side

    up = scripted(endless)
    relay = make_relay(up.url, timeouts=Timeouts(send=0.5), limits=Limits(socket_buffer=32 * KIB))
    sock = socket.socket()
    OPEN_SOCKETS.append(sock)  # closed by the harness whatever happens
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
    sock.connect(("127.0.0.1", relay.port))
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body(2))
    started = time.monotonic()
    assert wait_until(lambda: len(up.connections) == 1)
    # Never read: the relay pauses the upstream, then cuts both sides after 0.5 s of no progress.
    assert up.connections[0].closed.wait(10)
    assert time.monotonic() - started >= 0.5
    sock.settimeout(5)
    total = 0
    try:
        while data := sock.recv(1 << 20):
            total += len(data)
    except ConnectionResetError:
        pass  # cut with RST (abort): what the client sees is a broken, not a complete, stream
    assert 0 < total < 4 * MIB


# -- the connection alone: fake transport, fake clock ----------------------------------------

GET = b"GET /v1/models HTTP/1.1\r\nhost: localhost\r\n\r\n"
T = Timeouts(keepalive=75, request_head=60, request_body=30, send=20)


class Harness:
    """A ClientConnection on the fake transport, its timers on the fake clock, its handler
    tasks on the real loop of the test."""

    def __init__(self, handler: Handler | None = None, timeouts: Timeouts = T,
                 limits: Limits | None = None) -> None:
        self.clock = FakeLoop()
        self.transport = FakeTransport()
        self.requests: list[Exchange] = []
        self.conn = ClientConnection(handler or self.answer, limits or Limits(), timeouts,
                                     set(), self.clock)  # type: ignore[arg-type]
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]

    async def answer(self, ex: Exchange) -> None:
        self.requests.append(ex)
        ex.respond(200, b"{}")

    async def feed(self, data: bytes) -> bytes:
        self.conn.data_received(data)
        await self.clock.settle()
        return self.transport.take()


def _run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_a_request_walks_the_states_each_with_its_deadline() -> None:
    """READING_HEAD from the accept (the head deadline), READING_BODY per read (the body's),
    ANSWERING (none), AWAIT_HEAD (keep-alive), READING_HEAD again at a first byte; DRAINING
    while the answers are unread; CLOSING for a request that said close; REFUSED; CLOSED."""
    release = asyncio.Event()

    async def held(ex: Exchange) -> None:
        await release.wait()
        ex.respond(200, b"{}")

    async def scenario() -> None:
        h = Harness(held)
        seen = [h.conn.state]
        post = b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n"
        h.conn.data_received(post)
        seen.append(h.conn.state)
        h.conn.data_received(b"{}")
        seen.append(h.conn.state)
        h.clock.advance(1000)  # (no deadline while answering)
        release.set()
        await h.clock.settle()
        seen.append(h.conn.state)
        h.conn.data_received(GET[:5])
        seen.append(h.conn.state)
        assert seen == [State.READING_HEAD, State.READING_BODY, State.ANSWERING,
                        State.AWAIT_HEAD, State.READING_HEAD]
        assert h.transport.take().startswith(b"HTTP/1.1 200 ") and not h.transport.closed
        h.clock.advance(T.request_head)
        await h.clock.settle()
        assert h.conn.state is State.REFUSED and h.transport.take().startswith(b"HTTP/1.1 408 ")
        h.conn.connection_lost(None)
        assert h.conn.state is State.CLOSED

        h = Harness()
        h.conn.pause_writing()  # (the client reads nothing)
        await h.feed(GET)
        assert h.conn.state is State.DRAINING and not h.transport.reading
        h.conn.resume_writing()
        assert h.conn.state is State.AWAIT_HEAD
        h.conn.data_received(GET.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n"))
        assert h.conn.state is State.CLOSING
        await h.clock.settle()
        assert h.transport.closed

    _run(scenario)


def test_keepalive_idle_closes_at_its_time_not_before() -> None:
    async def scenario() -> None:
        h = Harness()
        assert (await h.feed(GET)).startswith(b"HTTP/1.1 200 ")
        h.clock.advance(74.999)
        assert not h.transport.closed
        h.clock.advance(0.001)
        assert h.transport.closed and not h.transport.aborted

    _run(scenario)


def test_the_head_deadline_runs_from_the_accept_then_from_a_first_byte() -> None:
    async def scenario() -> None:
        h = Harness()
        h.clock.advance(59.999)
        await h.feed(b"GET /v1/models HTTP/1.1\r\n")  # half a head, just in time
        h.clock.advance(0.001)
        out = h.transport.take()
        assert out.startswith(b"HTTP/1.1 408 ") and h.transport.closed
        h = Harness()
        await h.feed(GET)
        h.clock.advance(70)  # idle, within the keep-alive timeout
        await h.feed(b"GET /v1/models HTTP/1.1\r\n")  # a next head starts: 60 s from here
        h.clock.advance(59.999)
        assert not h.transport.closed
        h.clock.advance(0.001)
        assert h.transport.take().startswith(b"HTTP/1.1 408 ")

    _run(scenario)


def test_the_body_deadline_is_the_longest_silence_between_reads() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.feed(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3\r\n\r\na")
        h.clock.advance(29.999)
        await h.feed(b"b")  # a read re-arms it
        h.clock.advance(29.999)
        assert not h.transport.closed
        h.clock.advance(0.001)
        assert h.transport.take().startswith(b"HTTP/1.1 408 ") and h.requests == []

    _run(scenario)


@pytest.mark.parametrize("framing", [b"content-length: 100\r\n\r\na",
                                     b"transfer-encoding: chunked\r\n\r\n1\r\na\r\n"])
def test_a_trickled_body_gets_408_at_its_total_deadline(framing: bytes) -> None:
    """A byte every 20 s is never 30 s silent, but the whole body has 60 s from its first read
    (the default --request-body-deadline): then 408, the usual error body, and the close."""
    trickle = b"b" if framing.startswith(b"content-length") else b"1\r\nb\r\n"

    async def scenario() -> None:
        h = Harness()
        await h.feed(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\n" + framing)
        for _ in range(2):
            h.clock.advance(20)
            await h.feed(trickle)
        h.clock.advance(19.999)
        await h.feed(trickle)  # 59.999 s in: still taken, a silence deadline 30 s on
        assert not h.transport.closed and h.transport.take() == b""
        h.clock.advance(0.001)
        out = h.transport.take()
        assert out.startswith(b"HTTP/1.1 408 ") and h.transport.closed and h.requests == []
        assert b'"message":"request body not received whole within 60 s"' in out
        h = Harness(timeouts=replace(T, request_body_deadline=0))  # 0: no total deadline
        await h.feed(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\n" + framing)
        for _ in range(10):
            h.clock.advance(20)
            await h.feed(trickle)
        assert not h.transport.closed

    _run(scenario)


def test_a_trickled_body_gets_408_at_its_deadline_over_a_socket(
        mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, timeouts=Timeouts(request_body=10,
                                                          request_body_deadline=0.5))
    sock = connect(relay.port)
    started, reply = time.monotonic(), b""  # (before the relay sees the body start)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
                 b"content-length: 1000\r\n\r\n{")
    sock.settimeout(0.05)
    while not reply and time.monotonic() < started + 5:  # a byte each 50 ms until answered
        try:
            reply = sock.recv(65536)
        except TimeoutError:
            sock.sendall(b" ")
    sock.settimeout(5)
    reply += read_until_close(sock)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"connection: close\r\n" in reply.lower()
    assert b'"type":"invalid_request_error"' in reply and b"whole within 0.5 s" in reply
    assert time.monotonic() - started >= 0.5 - 0.001  # (the loop clock steps by 1 ms)


def test_the_send_timeout_runs_only_while_the_client_takes_nothing() -> None:
    async def scenario() -> None:
        h = Harness()
        h.conn.pause_writing()
        h.clock.advance(19.999)
        h.conn.resume_writing()  # progress: the clock starts again at the next pause
        h.conn.pause_writing()
        h.clock.advance(19.999)
        assert not h.transport.aborted
        h.clock.advance(0.001)
        assert h.transport.aborted

    _run(scenario)


def test_no_deadline_runs_while_a_response_is_being_answered() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def slow(ex: Exchange) -> None:
            await release.wait()
            ex.respond(200, b"{}")

        h = Harness(slow)
        h.conn.data_received(GET)
        assert h.clock.pending == []  # the request is in: nothing armed
        h.clock.advance(3600)
        assert not h.transport.closed
        release.set()
        await h.clock.settle()
        assert h.transport.take().startswith(b"HTTP/1.1 200 ")
        assert h.clock.pending == [h.clock.time() + 75]  # keep-alive from the response's end

    _run(scenario)


CHUNKED_POST = (b"POST /v1/a HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n"
                b"\r\n2\r\n{}\r\n0\r\n\r\n")


@pytest.mark.parametrize("first", [GET.replace(b"models", b"a"), CHUNKED_POST],
                         ids=["no body", "chunked body"])
def test_a_handler_that_needs_no_wait_answers_in_the_same_turn_without_a_task(
        first: bytes) -> None:
    """A handler that returns None answered at once: the response is out before the loop
    turns, and no Task was made for it (a Task costs an object and a turn of the loop). (A
    chunked body is h11's to read: its end comes as an h11 event, and after an answer given
    there, h11 is replaced: nothing may parse on from the old loop.)"""
    def at_once(ex: Exchange) -> None:
        ex.respond(200, ex.request.target)

    async def scenario() -> None:
        h = Harness(at_once, limits=Limits(max_headers=3))
        tasks = len(asyncio.all_tasks())
        h.conn.data_received(GET)
        assert h.transport.take().startswith(b"HTTP/1.1 200 ")
        assert len(asyncio.all_tasks()) == tasks
        # Pipelined behind one answered at once: the next head is still counted and checked
        # before h11 parses it (here too many headers, which h11 would take: 431).
        h.conn.data_received(first + GET.replace(
            b"\r\n\r\n", b"\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"))
        assert not h.transport.reading  # nothing new is read before the buffered head's check
        await h.clock.settle()
        out = h.transport.take()
        assert out.startswith(b"HTTP/1.1 200 ") and b"/v1/a" in out
        assert out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 431 " in out and h.transport.closed

    _run(scenario)


def test_a_length_body_split_over_reads_then_a_pipelined_request_and_an_eof() -> None:
    """h11 parses the head only; the body is counted from the raw bytes however the reads cut
    it, and what follows it (a next request, then the client's EOF) waits with reading paused
    until the first answer ended, then is checked and answered in order, then the close."""
    release = asyncio.Event()

    async def echo(ex: Exchange) -> None:
        if ex.request.method == b"POST":
            await release.wait()
        ex.respond(200, ex.request.method + b" " + ex.request.body)

    async def scenario() -> None:
        h = Harness(echo)
        post = b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\n"
        h.conn.data_received(post + b"abc")
        h.conn.data_received(b"defg")
        h.conn.data_received(b"hij" + GET[:10])  # the body's end and a next head's start
        assert not h.transport.reading
        h.conn.data_received(GET[10:])  # (a read already under way when reading paused)
        h.conn.eof_received()
        assert not h.transport.closed and h.transport.take() == b""  # the POST is answered...
        release.set()
        await h.clock.settle()
        out = h.transport.take()
        assert out.count(b"HTTP/1.1 200 ") == 2 and out.index(b"POST abcdefghij") < out.index(
            b"GET ")
        assert h.transport.closed  # ...the GET after it, then the EOF closes

    _run(scenario)


@pytest.mark.parametrize("pipelined", [False, True])
def test_an_eof_inside_a_length_body_is_a_400_and_nothing_is_answered(pipelined: bool) -> None:
    """The EOF comes once the head was parsed, or (pipelined behind an answer in flight) is
    already there behind the head when h11 parses it."""
    release = asyncio.Event()

    async def held(ex: Exchange) -> None:
        await release.wait()
        ex.respond(200, b"{}")

    async def scenario() -> None:
        h = Harness(held)
        post = b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\nabc"
        h.conn.data_received(GET + post if pipelined else post)
        h.conn.eof_received()
        release.set()
        await h.clock.settle()
        out = h.transport.take()
        assert out.count(b"HTTP/1.1 200 ") == pipelined and h.transport.closed
        assert b"HTTP/1.1 400 " in out and b"closed inside the request body" in out

    _run(scenario)


def test_after_a_head_the_old_h11_keeps_no_copy_of_the_body() -> None:
    """h11 stops at the head of a Content-Length request: the connection's h11 is already the
    next cycle's, so the body's bytes (a read can be 256 KiB) are not held twice while a long
    answer streams."""
    release = asyncio.Event()

    async def held(ex: Exchange) -> None:
        await release.wait()
        ex.respond(200, b"%d" % len(ex.request.body))

    async def scenario() -> None:
        h = Harness(held)
        body = b"x" * 100_000
        h.conn.data_received(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: "
                             b"100000\r\n\r\n" + body)
        assert not h.conn._reader.pending  # (white-box: nothing buffered)
        release.set()
        await h.clock.settle()
        assert h.transport.take().endswith(b"\r\n\r\n100000")

    _run(scenario)


def test_bytes_behind_a_close_request_do_not_stop_reading_so_a_leaving_client_is_seen() -> None:
    """A request that says close, with stray bytes in the same read: those are never parsed,
    and reading goes on, so the client's EOF is seen at once and its handler is cancelled,
    here before its task took a first step (the handler still starts, then gets the cancel
    where it waits: no coroutine is dropped never awaited)."""
    cancelled = asyncio.Event()

    async def slow(ex: Exchange) -> None:
        try:
            await asyncio.Event().wait()  # (an upstream that never answers)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        h = Harness(slow)
        h.conn.data_received(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n"
                             b"content-length: 2\r\n\r\n{}\r\nstray")
        assert h.transport.reading
        h.conn.eof_received()
        await asyncio.wait_for(cancelled.wait(), 5)
        assert h.transport.closed and h.transport.take() == b""

    _run(scenario)


def test_a_shutdown_between_an_answer_and_the_next_buffered_request_answers_no_more() -> None:
    asked: list[bytes] = []

    def at_once(ex: Exchange) -> None:
        asked.append(ex.request.target)
        ex.respond(200, ex.request.target)

    async def scenario() -> None:
        h = Harness(at_once)
        h.conn.data_received(GET.replace(b"models", b"a") + GET.replace(b"models", b"b"))
        h.conn.close_when_idle()  # the first is answered; the second waits for its turn
        await h.clock.settle()
        out = h.transport.take()
        assert out.count(b"HTTP/1.1 ") == 1 and b"/v1/a" in out and h.transport.closed
        assert asked == [b"/v1/a"]  # the buffered one is never handled on a closing connection

    _run(scenario)


def _sync_or_async(body: Callable[[Exchange], None]) -> list[Handler]:
    async def waits_first(ex: Exchange) -> None:
        await asyncio.sleep(0)
        body(ex)

    return [body, waits_first]


def _raise(ex: Exchange) -> None:
    raise ValueError("bug")


def _half(ex: Exchange) -> None:
    ex.start(200, [])
    ex.write(b"half")


@pytest.mark.parametrize("broken", _sync_or_async(_raise), ids=["at once", "after a wait"])
def test_a_handler_that_raises_gets_500_and_is_logged(
        broken: Handler, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        h = Harness(broken)
        out = await h.feed(GET)
        assert out.startswith(b"HTTP/1.1 500 ") and b"internal error in the relay" in out
        assert "handler failed" in caplog.text

    _run(scenario)


@pytest.mark.parametrize("forgetful", _sync_or_async(_half), ids=["at once", "after a wait"])
def test_a_handler_that_returns_without_ending_is_cut(
        forgetful: Handler, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        h = Harness(forgetful)
        await h.feed(GET)
        assert h.transport.aborted  # never a clean end for a body that did not end
        assert "returned without ending" in caplog.text

    _run(scenario)


def test_a_request_that_says_close_gets_connection_close_then_the_close() -> None:
    async def scenario() -> None:
        h = Harness()
        out = await h.feed(b"GET /v1/models HTTP/1.1\r\nhost: localhost\r\n"
                           b"connection: close\r\n\r\n")
        assert b"\r\nConnection: close\r\n" in out and h.transport.closed

    _run(scenario)


def test_pipelined_requests_wait_with_reading_paused_until_the_response_ends() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def held(ex: Exchange) -> None:
            await release.wait()
            ex.respond(200, ex.request.target)

        h = Harness(held)
        h.conn.data_received(GET.replace(b"models", b"a") + GET.replace(b"models", b"b"))
        assert not h.transport.reading  # PAUSED: the second request waits in h11's buffer
        release.set()
        await h.clock.settle()
        out = h.transport.take()
        assert out.count(b"HTTP/1.1 200 ") == 2 and out.index(b"/v1/a") < out.index(b"/v1/b")
        assert h.transport.reading

    _run(scenario)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("later", [False, True])
def test_bytes_after_a_request_that_says_close_are_never_parsed(
        later: bool, chunked: bool, mock_server: MockServer, make_relay: RelayFactory) -> None:
    """The request is answered, then the connection closes; what followed it (garbage here),
    in the same read or in a later one while the answer streams, is never parsed into a 400
    that would replace or cut the real answer. (A Content-Length body is read by the relay
    after h11 parsed the head, a chunked one by h11: both ways.)"""
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    body = chat_body(4)
    framed = (b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
              if chunked else b"content-length: %d\r\n\r\n%s" % (len(body), body))
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nconnection: close"
               b"\r\nx-mock-delay-ms: 50\r\n" + framed)
    garbage = b"NOT HTTP\r\n\r\nGET /v1/models HTTP/1.1\r\n\r\n"
    if later:
        sock.sendall(request)
        first = recv_until(sock, lambda got: b"data: " in got)  # the answer is streaming
        sock.sendall(garbage)
    else:
        first = b""
        sock.sendall(request + garbage)
    reply = first + read_until_close(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.count(b"HTTP/1.1 ") == 1
    assert b"\r\nConnection: close\r\n" in reply and reply.endswith(b"0\r\n\r\n")
    assert sse_data(reply)[-1].startswith(b"[DONE]")
    assert mock_server.mock.requests == 1


def test_the_next_request_waits_until_the_answers_are_read() -> None:
    """A client that pipelines and never reads: once an answer fills the write buffer, no
    further request is parsed (nor answered) until the client reads."""

    async def scenario() -> None:
        async def answer(ex: Exchange) -> None:
            if not h.requests:
                h.conn.pause_writing()  # what the transport does once its buffer is full
            h.requests.append(ex)
            ex.respond(200, b"{}")

        h = Harness(answer)
        h.conn.data_received(GET * 3)
        await h.clock.settle()
        assert len(h.requests) == 1 and not h.transport.reading
        h.clock.advance(1)
        await h.clock.settle()
        assert len(h.requests) == 1  # nothing more while the client reads nothing
        h.conn.resume_writing()
        await h.clock.settle()
        assert len(h.requests) == 3 and h.transport.take().count(b"HTTP/1.1 200 ") == 3
        assert h.transport.reading

    _run(scenario)


PUBLISH = b"POST /events/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}"
_DIRECT = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ndirect"


class DirectHandler:
    """A handler with a direct answer (relay.net.exchange.DirectAnswers) that says what it
    was given."""

    def __init__(self, answer: Callable[[], bytes | None] = lambda: _DIRECT) -> None:
        self.usual: list[bytes] = []
        self.direct_bodies: list[bytes] = []
        self.peers: list[str] = []
        self._answer = answer

    def __call__(self, ex: Exchange) -> None:
        self.usual.append(ex.request.body)
        ex.respond(200, b"usual")

    def direct(self, head: Any, body: bytes, peer: Callable[[], str]) -> bytes | None:
        self.direct_bodies.append(body)
        self.peers.append(peer())
        return self._answer()


def test_a_known_head_with_its_whole_body_alone_in_a_read_is_answered_directly() -> None:
    """Only then: a first (unknown) head, a pipelined pair, a body split over reads, and a
    None from ``direct`` go the usual way, each answered once, in order."""

    async def scenario() -> None:
        handler = DirectHandler()
        h = Harness(handler)  # type: ignore[arg-type]
        assert (await h.feed(PUBLISH)).endswith(b"usual")  # unknown: parsed by h11
        assert await h.feed(PUBLISH) == _DIRECT and handler.direct_bodies == [b"{}"]
        assert handler.peers == ["127.0.0.1:40000"]
        assert (await h.feed(PUBLISH * 2)).count(b"usual") == 2  # bytes after: usual
        assert (await h.feed(PUBLISH[:-1]) + await h.feed(b"}")).endswith(b"usual")
        assert await h.feed(PUBLISH) == _DIRECT  # and again, once alone
        assert len(handler.usual) == 4 and len(handler.direct_bodies) == 2
        refusing = DirectHandler(lambda: None)
        h = Harness(refusing)  # type: ignore[arg-type]
        for _ in range(2):
            assert (await h.feed(PUBLISH)).endswith(b"usual")
        assert refusing.direct_bodies == [b"{}"] and refusing.usual == [b"{}", b"{}"]

    _run(scenario)


def test_after_a_direct_answer_the_connection_is_idle_as_after_any_answer() -> None:
    """Its keep-alive deadline runs from the answer; an answer the client does not read
    stops the reading until it does; a direct answer that raises goes the usual way."""

    async def scenario() -> None:
        h = Harness(DirectHandler())  # type: ignore[arg-type]
        await h.feed(PUBLISH)
        h.clock.advance(70)
        assert await h.feed(PUBLISH) == _DIRECT
        h.clock.advance(74)
        assert not h.transport.closed  # 144 s after the accept, 74 after the answer
        h.clock.advance(1.5)
        assert h.transport.closed

        def fill() -> bytes:
            h.conn.pause_writing()  # what the transport does once its buffer is full
            return _DIRECT

        h = Harness(DirectHandler(fill))  # type: ignore[arg-type]
        await h.feed(PUBLISH)
        assert await h.feed(PUBLISH) == _DIRECT and not h.transport.reading
        h.conn.resume_writing()
        await h.clock.settle()
        assert h.transport.reading and await h.feed(PUBLISH) == _DIRECT

        def broken() -> bytes:
            raise RuntimeError("a bug")

        handler = DirectHandler(broken)
        h = Harness(handler)  # type: ignore[arg-type]
        await h.feed(PUBLISH)
        assert (await h.feed(PUBLISH)).endswith(b"usual") and not h.transport.closed
        assert handler.usual == [b"{}", b"{}"]  # (the usual way answers: one failure path)

    _run(scenario)


def test_a_refusal_reaches_a_client_that_is_still_sending(
        mock_server: MockServer, make_relay: RelayFactory) -> None:
    """The 413 for a body too large is read by the client even while it goes on sending the
    body: the relay's close lingers (FIN after the answer, the rest read and dropped). Closed
    at once, the unread bytes made the kernel send a reset, and the client's kernel dropped
    the 413 it had not read yet."""
    relay = make_relay(mock_server.url, limits=Limits(max_body_size=64 * KIB))
    for head in (b"content-length: %d\r\n" % (4 * MIB), b"transfer-encoding: chunked\r\n"):
        sock = connect(relay.port)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n" + head
                     + b"\r\n")
        piece = b"x" * MIB if head.startswith(b"content") else b"100000\r\n" + b"x" * MIB + b"\r\n"
        for _ in range(4):
            sock.sendall(piece)  # (the relay refused at the first: it reads on and drops)
        reply = read_until_close(sock)  # a reset here raises ConnectionResetError
        assert reply.startswith(b"HTTP/1.1 413 ") and b'"error"' in reply
        sock.close()


def test_a_lingering_close_ends_by_itself(
        mock_server: MockServer, make_relay: RelayFactory) -> None:
    """A refused client that never stops sending is closed after LINGER seconds all the same."""
    relay = make_relay(mock_server.url, limits=Limits(max_body_size=64 * KIB))
    sock = connect(relay.port)
    sock.sendall(b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 9999999999\r\n\r\n")
    assert recv_until(sock, lambda got: b"\r\n\r\n" in got).startswith(b"HTTP/1.1 413 ")
    started = time.monotonic()
    with pytest.raises(OSError):  # (reset or broken pipe, once the relay closed)
        while time.monotonic() - started < LINGER + 10:
            sock.sendall(b"x" * (64 * KIB))
    assert time.monotonic() - started >= LINGER - 0.5
    sock.close()
