"""UpstreamConnection against scripted upstreams: timeouts and protocol errors, both phases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from relay.config import Limits, Timeouts
from relay.errors import RelayError, UpstreamTimeout
from relay.http1.messages import ResponseHead
from relay.net.deadlines import Deadlines
from relay.net.upstream import BodyForm, ConnState, UpstreamConnection

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    SSE_HEAD,
    FakeLoop,
    FakeTransport,
    H11Client,
    ScriptedUpstream,
    UpstreamConn,
    chat_body,
    chunked,
    connect,
)


def _relay_reply(up: ScriptedUpstream, make_relay: RelayFactory, **kw: object) -> tuple[int, bytes]:
    relay = make_relay(up.url, **kw)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body())
    reply = client.read_reply()
    return reply.status, reply.body


def test_idle_read_timeout_mid_stream_ends_with_error_event(scripted: ScriptedFactory,
                                                            make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD + chunked(b"data: {\"n\": 1}\n\n"))
        await c.watch_close()  # then silence

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay, timeouts=Timeouts(read=0.3))
    assert status == 200
    first, error, rest = body.split(b"\n\n")
    assert first == b'data: {"n": 1}' and rest == b""
    assert json.loads(error[6:])["error"]["code"] == "upstream_timeout"
    assert up.connections[0].closed.wait(2)


def test_steady_events_do_not_trip_the_read_timeout(scripted: ScriptedFactory,
                                                    make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD)
        for i in range(8):  # 0.8 s in all, 0.1 s apart, against a 0.3 s idle timeout
            await asyncio.sleep(0.1)
            c.write(chunked(b"data: %d\n\n" % i))
        c.write(b"0\r\n\r\n")

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay, timeouts=Timeouts(read=0.3))
    assert status == 200 and body.count(b"data: ") == 8 and b"error" not in body


def test_malformed_status_line_is_502(scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 OK-ish\r\n\r\n")
        await c.watch_close()

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay)
    assert status == 502
    assert json.loads(body)["error"]["code"] == "upstream_protocol_error"


def test_broken_chunk_framing_mid_stream_gives_error_event(scripted: ScriptedFactory,
                                                           make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD + chunked(b"data: ok\n\n") + b"zz\r\nnot a chunk\r\n")
        await c.watch_close()

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay)
    assert status == 200
    events = body.split(b"\n\n")
    assert events[0] == b"data: ok"
    assert json.loads(events[1][6:])["error"]["code"] == "upstream_protocol_error"


def test_close_without_response_is_502(scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay)
    assert status == 502
    assert json.loads(body)["error"]["code"] == "upstream_closed"


def test_close_delimited_upstream_body_is_relayed_and_not_pooled(scripted: ScriptedFactory,
                                                                 make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: a\n\n")
        c.write(b"data: b\n\ndata: [DONE]\r\n\r\n")

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay)
    assert status == 200 and body == b"data: a\n\ndata: b\n\ndata: [DONE]\r\n\r\n"


def test_close_delimited_stream_without_done_tells_the_client(scripted: ScriptedFactory,
                                                              make_relay: RelayFactory) -> None:
    """An upstream body framed by EOF looks the same finished or cut; without [DONE] the
    client gets a final error event, never a silent success."""
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: a\n\n")
        c.write(b"data: {\"partial\"")  # and the connection ends

    up: ScriptedUpstream = scripted(script)
    status, body = _relay_reply(up, make_relay)
    assert status == 200
    assert body.startswith(b"data: a\n\ndata: {\"partial\"\n\ndata: {\"error\"")
    assert b"without data: [DONE]" in body and b"upstream_closed" in body


def test_interim_100_response_is_skipped(scripted: ScriptedFactory,
                                         make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await c.watch_close()

    up: ScriptedUpstream = scripted(script)
    assert _relay_reply(up, make_relay) == (200, b"ok")


# -- the connection alone: the fake transport and the fake clock --------------------------------


class _Pump:
    """A listener that records what the upstream connection tells it."""

    def __init__(self, form: BodyForm = BodyForm.PAYLOAD, on_piece: object = None) -> None:
        self.form, self.on_piece = form, on_piece
        self.heads: list[ResponseHead] = []
        self.pieces: list[bytes] = []
        self.completed = 0
        self.failures: list[RelayError] = []
        self.silences = 0

    def on_head(self, head: ResponseHead) -> tuple[BodyForm, Callable[[list[bytes]], None]]:
        self.heads.append(head)
        return self.form, self.sink

    def sink(self, pieces: list[bytes]) -> None:
        self.pieces += pieces
        if callable(self.on_piece):
            self.on_piece()

    def on_complete(self) -> None:
        self.completed += 1

    def on_failure(self, exc: RelayError) -> None:
        self.failures.append(exc)

    def on_silence(self) -> bool:
        self.silences += 1
        return True


def _connection(clock: FakeLoop, timeouts: Timeouts | None = None
                ) -> tuple[UpstreamConnection, FakeTransport, list[UpstreamConnection]]:
    closed: list[UpstreamConnection] = []
    conn = UpstreamConnection(Limits(), timeouts or Timeouts(), Deadlines(clock, 1.0),  # type: ignore[arg-type]
                              closed.append, clock)  # type: ignore[arg-type]
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, closed


def _exchange(conn: UpstreamConnection, response: bytes, pump: _Pump | None = None) -> _Pump:
    pump = pump or _Pump()
    conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", pump)
    conn.data_received(response)
    return pump


def test_a_pause_on_the_last_read_does_not_follow_the_connection_into_the_pool(
        fake_loop: FakeLoop) -> None:
    """The client's buffer filling on the read that also ends the body used to leave the
    connection paused while idle: the next request on it never got its response read."""
    conn, transport, _ = _connection(fake_loop)
    pump = _Pump(on_piece=conn.pause_reads)  # the client's write buffer went over high water
    _exchange(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", pump)
    assert pump.completed == 1 and conn.state is ConnState.IDLE
    assert transport.reading_calls == ["pause", "resume"] and transport.reading


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: Keep-Alive, Close\r\n\r\n{}",
    b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}X",  # a stray byte after the body
    b"HTTP/1.1 204 No Content\r\n\r\nX",  # ... after a body-less response
    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nX",
    b"HTTP/1.1 200 OK\r\n\r\n{}",  # close-delimited: its end is the close
])
def test_a_connection_out_of_step_is_never_reused(fake_loop: FakeLoop, response: bytes) -> None:
    conn, transport, closed = _connection(fake_loop)
    pump = _exchange(conn, response)
    if b"content-length" in response or b"chunked" in response or b"204" in response:
        assert pump.completed == 1
    else:  # (close-delimited: ends at the EOF, and so is not reusable either)
        conn.eof_received()
        assert pump.completed == 1
    assert conn.state is ConnState.CLOSED and transport.aborted and closed == [conn]
    assert not conn.is_available()


def test_a_clean_keep_alive_response_is_reused(fake_loop: FakeLoop) -> None:
    conn, transport, closed = _connection(fake_loop)
    for _ in range(3):
        pump = _exchange(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        assert pump.completed == 1 and pump.pieces == [b"{}"]
        assert conn.state is ConnState.IDLE and conn.is_available()
    assert not transport.closed and closed == []
    assert conn.counts() == (2, 0)


def test_sending_on_an_unavailable_connection_is_refused(fake_loop: FakeLoop) -> None:
    conn, _transport, _ = _connection(fake_loop)
    conn.close()
    with pytest.raises(RuntimeError, match="closed"):
        conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", _Pump())


def test_head_facts_and_the_framed_form(fake_loop: FakeLoop) -> None:
    conn, _, _ = _connection(fake_loop)
    pump = _exchange(conn, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                           b"5\r\nhello\r\n0\r\n\r\n", _Pump(BodyForm.FRAMED))
    head = pump.heads[0]
    assert (head.status, head.length, head.chunked) == (200, None, True)
    assert pump.pieces == [b"5\r\nhello\r\n"]  # still framed
    assert conn.payload_tail() == b"ello"  # kept after the end, for the pump's questions
    pump = _exchange(conn, b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc")
    assert (pump.heads[0].length, pump.heads[0].chunked) == (3, False)


def test_first_byte_deadline_fires_at_its_time_not_before(fake_loop: FakeLoop) -> None:
    conn, transport, _ = _connection(fake_loop, Timeouts(first_byte=30))
    pump = _Pump()
    conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", pump)
    sent = fake_loop.time()
    conn.check_deadline(sent + 29.999)
    assert pump.failures == [] and not transport.closed
    conn.check_deadline(sent + 30)
    assert isinstance(pump.failures[0], UpstreamTimeout) and transport.aborted


def test_the_shared_tick_checks_the_deadline(fake_loop: FakeLoop) -> None:
    """With the tick (1 s here), the timeout fires between its time and one tick later."""
    conn, _, _ = _connection(fake_loop, Timeouts(first_byte=3))
    pump = _Pump()
    conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", pump)
    fake_loop.advance(2.999)
    assert pump.failures == []
    fake_loop.advance(1.001)
    assert len(pump.failures) == 1


def test_read_deadline_waits_while_the_client_holds_reads_paused(fake_loop: FakeLoop) -> None:
    conn, _transport, _ = _connection(fake_loop, Timeouts(read=10, heartbeat=0))
    pump = _Pump()
    conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", pump)
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
    t0 = fake_loop.time()
    conn.check_deadline(t0 + 9.999)
    assert pump.failures == []
    conn.pause_reads()
    conn.check_deadline(t0 + 50)  # the client is slow, not the upstream
    assert pump.failures == []
    conn.resume_reads()
    conn.check_deadline(t0 + 59.999)
    assert pump.failures == []
    conn.check_deadline(t0 + 60)
    assert isinstance(pump.failures[0], UpstreamTimeout)
    assert "sent nothing for 10 s" in str(pump.failures[0])


def test_silence_asks_for_a_heartbeat_once_per_period(fake_loop: FakeLoop) -> None:
    conn, _, _ = _connection(fake_loop, Timeouts(heartbeat=15))
    pump = _Pump()
    conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", pump)
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    t0 = fake_loop.time()
    conn.check_deadline(t0 + 14.999)
    assert pump.silences == 0
    conn.check_deadline(t0 + 15)
    assert pump.silences == 1
    conn.check_deadline(t0 + 29.999)
    assert pump.silences == 1
    conn.check_deadline(t0 + 30)
    assert pump.silences == 2
