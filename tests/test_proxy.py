"""ProxyRequest, the pump and its three endings: end to end over loopback (pass-through, no
buffering, endings, heartbeats, no reference cycles), and alone for races no socket can time."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http1.messages import Request
from relay.net.exchange import Exchange
from relay.net.flow import WriteFlow
from relay.ops.access_log import AccessLog
from relay.ops.observer import Observer
from relay.ops.record import Record
from relay.proxy import ProxyRequest

from .conftest import MockServer, RelayFactory, ScriptedFactory
from .support import (
    OK_JSON,
    SSE_HEAD,
    FakeTransport,
    H11Client,
    LoopThread,
    ScriptedUpstream,
    UpstreamConn,
    chat_body,
    chunked,
    connect,
    recv_until,
    sse_data,
    unaccepting_port,
    wait_until,
)


def test_odd_bytes_and_chunk_boundaries_pass_unchanged(scripted: ScriptedFactory, lt: LoopThread,
                                                       make_relay: RelayFactory) -> None:
    """Chunk boundaries inside events, CR-only line ends, a BOM, invalid UTF-8: bytes are bytes."""
    pieces = [b"\xef\xbb\xbfdata: a", b"b\r\rdata: \xff\xfe\r", b"\n", b": c\n\ndata",
              b": [DONE]\n\n"]

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD)
        for p in pieces:
            c.write(chunked(p))
            await c.writer.drain()
        c.write(b"0\r\n\r\n")

    up = scripted(script)
    relay = make_relay(up.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    reply = client.read_reply()
    assert reply.status == 200
    assert reply.body == b"".join(pieces)


def test_no_buffering_each_event_arrives_within_50ms(mock_server: MockServer,
                                                     make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    client = H11Client(sock)
    client.send(b"POST", b"/v1/chat/completions", chat_body(18),
                [(b"x-mock-delay-ms", b"100"), (b"x-mock-timestamps", b"1")])
    arrivals: list[tuple[float, dict[str, object]]] = []
    buf = b""
    raw = b""
    while not raw.endswith(b"0\r\n\r\n"):
        data = sock.recv(65536)
        assert data
        now = time.time()
        raw += data
        buf += data
        # The test reads raw chunked bytes; event payloads are whole lines within them.
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            line = event[event.find(b"data: "):]
            if line.startswith(b"data: {"):
                arrivals.append((now, json.loads(line[6:].split(b"\r\n")[0])))
    assert len(arrivals) == 20  # role chunk, 18 content chunks, finish chunk
    sent = [float(doc["mock_sent_at"]) for _, doc in arrivals]  # type: ignore[arg-type]
    assert arrivals[0][0] < sent[2], "first chunk must arrive before the third is sent"
    lags = [arrived - s for (arrived, _), s in zip(arrivals, sent, strict=True)]
    assert max(lags) < 0.050, f"per-event lag up to {max(lags) * 1000:.1f} ms"


def test_client_disconnect_closes_upstream_within_200ms(scripted: ScriptedFactory, lt: LoopThread,
                                                        make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD)
        watcher = asyncio.ensure_future(c.watch_close())
        for i in range(200):  # 10 s of events unless the relay closes us
            if c.closed.is_set():
                break
            c.write(chunked(b"data: {\"n\": %d}\n\n" % i))
            await asyncio.sleep(0.05)
        await watcher

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url)
    sock = connect(relay.port)
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body())
    recv_until(sock, lambda got: got.count(b"data: ") >= 3)
    sock.close()
    closed_by_client = time.monotonic()
    assert wait_until(lambda: len(up.connections) == 1 and up.connections[0].closed.is_set(), 2)
    closed_at = up.connections[0].closed_at
    assert closed_at is not None
    assert closed_at - closed_by_client < 0.200
    assert lt.call(lambda: relay.pool.idle_count) == 0  # never returned to the pool


def test_pool_reuses_connection_after_clean_response(mock_server: MockServer,
                                                     make_relay: RelayFactory,
                                                     lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    for _ in range(5):
        client = H11Client(connect(relay.port))
        client.send(b"POST", b"/v1/chat/completions", chat_body(3))
        assert client.read_reply().status == 200
        client.sock.close()
    assert lt.call(lambda: (relay.pool.created, relay.pool.reused)) == (1, 4)


def test_upstream_closing_idle_connection_is_not_reused(scripted: ScriptedFactory, lt: LoopThread,
                                                        make_relay: RelayFactory) -> None:
    """A keep-alive response, then the upstream closes the idle socket: the next request must
    go on a new connection, never fail with 'server disconnected'."""

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await c.writer.drain()

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url)
    for n in (1, 2):
        client = H11Client(connect(relay.port))
        client.send(b"GET", b"/v1/models")
        assert client.read_reply().body == b"{}"
        assert wait_until(lambda: lt.call(lambda: relay.pool.idle_count) == 0, 2)
        assert len(up.connections) == n


@pytest.mark.parametrize("status", [401, 429, 500])
def test_upstream_error_status_passes_through(status: int, mock_server: MockServer,
                                              make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(),
                [(b"x-mock-status", str(status).encode())])
    reply = client.read_reply()
    assert reply.status == status
    assert json.loads(reply.body)["error"]["message"] == f"mock error {status}"
    if status == 429:
        assert reply.headers[b"retry-after"] == b"1"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_connect_refused_gives_502(make_relay: RelayFactory) -> None:
    relay = make_relay(f"http://127.0.0.1:{_closed_port()}")
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    reply = client.read_reply()
    assert reply.status == 502
    err = json.loads(reply.body)["error"]
    assert err["code"] == "upstream_connect_failed" and err["type"] == "upstream_error"
    assert "refused" in err["message"].lower()


def test_dns_failure_gives_502(make_relay: RelayFactory) -> None:
    relay = make_relay("http://no-such-host.invalid:9")
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/v1/models")
    reply = client.read_reply()
    assert reply.status == 502
    assert json.loads(reply.body)["error"]["code"] == "upstream_connect_failed"


def test_first_byte_timeout_gives_504(scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    from relay.config import Timeouts

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        await c.watch_close()  # never answer

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url, timeouts=Timeouts(first_byte=0.3))
    client = H11Client(connect(relay.port))
    started = time.monotonic()
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    reply = client.read_reply()
    assert reply.status == 504
    assert json.loads(reply.body)["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started >= 0.3
    assert wait_until(lambda: up.connections[0].closed.is_set(), 2)  # and the upstream is closed


def test_connect_timeout_gives_504(make_relay: RelayFactory) -> None:
    """A listener whose accept queue is full drops SYNs, so connect() hangs: a timeout."""
    from relay.config import Timeouts

    with unaccepting_port() as port:
        relay = make_relay(f"http://127.0.0.1:{port}", timeouts=Timeouts(connect=0.3))
        client = H11Client(connect(relay.port))
        client.send(b"GET", b"/v1/models")
        reply = client.read_reply()
        assert reply.status == 504
        assert "timed out" in json.loads(reply.body)["error"]["message"]


def test_mid_stream_upstream_death_ends_with_sse_error_event(mock_server: MockServer,
                                                             make_relay: RelayFactory,
                                                             lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(10), [(b"x-mock-fail-after", b"3")])
    reply = client.read_reply()  # h11 raises if the chunked body does not end cleanly
    assert reply.status == 200
    events = sse_data(reply.body)
    assert len(events) == 4
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_closed"
    assert reply.body.endswith(b"\n\n")
    assert lt.call(lambda: relay.pool.idle_count) == 0


def test_death_inside_an_event_keeps_the_error_event_separate(scripted: ScriptedFactory,
                                                              make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD + chunked(b"data: {\"a\": 1}\n\n", b"data: {\"tor"))
        await c.writer.drain()
        c.writer.transport.abort()

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    body = client.read_reply().body
    events = body.split(b"\n\n")
    assert events[0] == b'data: {"a": 1}'
    assert events[1] == b'data: {"tor'  # the torn event ends before ours begins
    assert json.loads(events[2][6:])["error"]["code"] == "upstream_closed"


def test_death_inside_a_json_body_cuts_the_client(scripted: ScriptedFactory,
                                                  make_relay: RelayFactory) -> None:
    """A truncated non-SSE body must not look complete: the client connection is cut."""

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
                b'{"partial": ')
        await c.writer.drain()
        c.writer.transport.abort()

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(stream=False))
    import h11

    with pytest.raises(h11.RemoteProtocolError):
        client.read_reply()


def test_relayed_requests_leave_no_reference_cycles(mock_server: MockServer,
                                                    make_relay: RelayFactory,
                                                    lt: LoopThread) -> None:
    """The relay tunes the cyclic GC down (app.tune_gc) because its full collections paused the
    loop for 100+ ms at 10k streams; that is only safe while requests leave no cycles."""
    import gc

    relay = make_relay(mock_server.url)
    ours = {"ClientConnection", "Exchange", "Request", "ProxyRequest", "UpstreamConnection",
            "WriteFlow", "Timer", "ChunkedPassthrough", "Record", "ResponseHead"}
    gc.collect()
    gc.disable()
    try:
        for stream in (True, False, True):
            client = H11Client(connect(relay.port))
            client.send(b"POST", b"/v1/chat/completions", chat_body(3, stream=stream))
            client.read_reply()
            client.sock.close()
        client = H11Client(connect(relay.port))  # and one client that leaves mid-stream
        client.send(b"POST", b"/v1/chat/completions", chat_body(50),
                    [(b"x-mock-delay-ms", b"20")])
        client.sock.recv(100)
        client.sock.close()
        assert wait_until(lambda: not relay.listener.connections, 2)
        assert wait_until(lambda: lt.call(lambda: len(relay.pool.deadlines)) == 0, 2)
        for _ in range(3):  # round trips through the loop run the callbacks already queued
            lt.call(lambda: None)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leaked = [type(o).__name__ for o in gc.garbage if type(o).__name__ in ours]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []


# -- heartbeats (issue 4) --------------------------------------------------------------------

CHUNK1 = (b'{"id":"c1","object":"chat.completion.chunk","created":0,"model":"m",'
          b'"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}')
CHUNK2 = CHUNK1.replace(b'"Hel"', b'"lo"')


def _heartbeat_script(pause_inside: float, quiet: float) -> Any:
    """An upstream that sends ``id:`` lines (the openai-python trap), stays quiet before its
    first event and after its last, and pauses ``pause_inside`` s in the middle of an event."""

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD)
        await asyncio.sleep(quiet)
        c.write(chunked(b"id: 1\ndata: " + CHUNK1[:40]))
        await asyncio.sleep(pause_inside)
        c.write(chunked(CHUNK1[40:] + b"\n\n", b"id: 2\ndata: " + CHUNK2 + b"\n\n"))
        await asyncio.sleep(quiet)
        c.write(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await c.watch_close()

    return script


def test_heartbeats_only_between_events_and_sdk_unaffected(scripted: ScriptedFactory,
                                                           make_relay: RelayFactory) -> None:
    from relay.config import Timeouts
    from relay.http1.sse import HEARTBEAT

    up: ScriptedUpstream = scripted(_heartbeat_script(3.5, 1.6))
    relay = make_relay(up.url, timeouts=Timeouts(heartbeat=1.0))
    sdk_chunks: list[Any] = []

    def sdk() -> None:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{relay.port}/v1", api_key="x",
                               max_retries=0)
        stream = client.chat.completions.create(model="m", messages=[], stream=True)
        sdk_chunks.extend(stream)

    thread = threading.Thread(target=sdk)
    thread.start()  # the SDK and a raw client read the same kind of stream at the same time
    client = H11Client(connect(relay.port, timeout=20))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    body = client.read_reply().body
    thread.join(20)

    upstream_bytes = (b"id: 1\ndata: " + CHUNK1 + b"\n\nid: 2\ndata: " + CHUNK2
                      + b"\n\ndata: [DONE]\n\n")
    assert body.replace(HEARTBEAT, b"") == upstream_bytes  # otherwise byte-identical
    before, rest = body.split(b"id: 1\n", 1)
    inside, after = rest.split(b"\n\n", 1)
    assert before.count(HEARTBEAT) >= 1  # before the first upstream byte of the body
    assert HEARTBEAT not in inside  # never inside the event, though it paused 3.5 s
    assert after.split(b"data: [DONE]")[0].count(HEARTBEAT) >= 1  # and after it
    assert [c.choices[0].delta.content for c in sdk_chunks] == ["Hel", "lo"]


def test_no_heartbeat_into_an_encoded_stream(scripted: ScriptedFactory,
                                             make_relay: RelayFactory) -> None:
    from relay.config import Timeouts

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip"
                b"\r\ntransfer-encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.8)
        c.write(chunked(b"\x1f\x8b compressed bytes") + b"0\r\n\r\n")
        await c.watch_close()

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url, timeouts=Timeouts(heartbeat=0.2))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    reply = client.read_reply()
    assert reply.headers[b"content-encoding"] == b"gzip"
    assert reply.body == b"\x1f\x8b compressed bytes"


def test_relay_is_byte_transparent(scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    """Any upstream bytes (random, CR-only line ends, BOM, invalid UTF-8), in any chunking,
    reach the client unchanged (heartbeats off). One relay serves every hypothesis example."""
    from relay.config import Timeouts

    current: list[bytes] = []

    async def script(c: UpstreamConn) -> None:
        while await c.read_request():
            c.write(SSE_HEAD + chunked(*current) + b"0\r\n\r\n")
            await c.writer.drain()

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url, timeouts=Timeouts(heartbeat=0))

    @settings(max_examples=40, deadline=None)
    @given(pieces=st.lists(st.binary(min_size=1, max_size=300) | st.sampled_from(
        [b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xff\xfe", b"data: x\r", b": c\n\n"]),
        min_size=1, max_size=12))
    def check(pieces: list[bytes]) -> None:
        current[:] = pieces
        client = H11Client(connect(relay.port))
        client.send(b"POST", b"/v1/chat/completions", chat_body())
        assert client.read_reply().body == b"".join(pieces)
        client.sock.close()

    check()


# -- alone: races no socket can time -----------------------------------------------------------


class _Pool:
    """A pool whose connect finishes just as the client leaves."""

    host_header = b"upstream"

    def __init__(self, conn: object, on_acquire: Callable[[], None]) -> None:
        self.conn, self.on_acquire = conn, on_acquire
        self.put_back_conns: list[object] = []

    async def acquire(self) -> object:
        self.on_acquire()
        return self.conn

    def put_back(self, conn: object) -> None:
        self.put_back_conns.append(conn)


class _NeverSend:
    def is_available(self) -> bool:
        return True

    def send_request(self, *args: object) -> None:
        raise AssertionError("a request whose client left must never be sent")


def test_a_client_leaving_just_as_the_connect_finishes_sends_nothing() -> None:
    observer = Observer(AccessLog(None), lambda: 0.0, [])
    request = Request(b"POST", b"/v1/chat/completions", [(b"host", b"x")], b"1.1", b"{}")
    transport = FakeTransport()
    ex = Exchange(_Owner(), request, transport, WriteFlow())  # type: ignore[arg-type]
    record = Record(b"POST", b"/v1/chat/completions", "", b"rid", 2, 0.0)
    observer.start(record)
    conn = _NeverSend()
    pool = _Pool(conn, ex.client_gone)
    asyncio.run(ProxyRequest(ex, pool, None, observer, record).run())  # type: ignore[arg-type]
    assert record.ended == "client_disconnect" and pool.put_back_conns == [conn]
    assert observer.active_streams == 0 and transport.take() == b""


class _Owner:
    def exchange_ended(self, ex: Exchange) -> None:
        pass


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 304)])
def test_a_bodyless_response_keeps_its_declared_length(method: bytes, status: int,
                                                       scripted: ScriptedFactory,
                                                       make_relay: RelayFactory) -> None:
    """RFC 9110 9.3.2 and 15.4.5: a HEAD response (or a 304) says the length the body would
    have had; it is passed on as it is (not turned into chunked), with no body, and the
    connections on both sides stay usable."""
    head = b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: 1234\r\n\r\n" % (
        status)

    async def script(c: UpstreamConn) -> None:
        while await c.read_request():
            c.write(head if not c.request_line.startswith(b"POST") else OK_JSON)

    up = scripted(script)
    relay = make_relay(up.url)
    sock = connect(relay.port)
    sock.sendall(method + b" /v1/files/1 HTTP/1.1\r\nhost: localhost\r\n\r\n")
    reply = recv_until(sock, lambda got: b"\r\n\r\n" in got)
    head_out, _, rest = reply.partition(b"\r\n\r\n")
    assert head_out.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\ncontent-length: 1234" in head_out and b"chunked" not in head_out.lower()
    assert rest == b""
    client = H11Client(sock)  # the same client connection, and the same upstream one
    client.send(b"POST", b"/v1/x", b"{}")
    assert client.read_reply().body == b"{}"
    assert len(up.connections) == 1
