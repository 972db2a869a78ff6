"""UpstreamConnection against scripted upstreams: timeouts and protocol errors, both phases."""

from __future__ import annotations

import asyncio
import json

from relay.config import Timeouts

from .conftest import RelayFactory, ScriptedFactory
from .helpers import (
    SSE_HEAD,
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


class _Transport:
    """A transport that records pause/resume (the gate test needs no socket)."""

    def __init__(self) -> None:
        self.reading = True
        self.written = b""

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts: list[bytes]) -> None:
        self.written += b"".join(parts)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def abort(self) -> None:
        pass


def test_a_pause_on_the_last_read_does_not_follow_the_connection_into_the_pool() -> None:
    """The client's buffer filling on the read that also ends the body used to leave the
    connection paused while idle: the next request on it never got its response read."""
    from relay.config import Limits
    from relay.deadlines import Deadlines
    from relay.upstream import ConnState, UpstreamConnection

    async def scenario() -> tuple[ConnState, bool, bool]:
        loop = asyncio.get_running_loop()
        conn = UpstreamConnection(Limits(), Timeouts(), Deadlines(loop, 1.0))
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        completed: list[bool] = []

        class Listener:
            def on_head(self, *args: object) -> tuple[object, bool]:
                return self.sink, False

            def sink(self, pieces: list[bytes]) -> None:
                conn.gate.pause("client")  # the client's write buffer went over high water

            def on_complete(self) -> None:
                completed.append(True)

            def on_error(self, exc: Exception) -> None:
                raise AssertionError(exc)

            def heartbeat(self) -> bool:
                return False

        conn.send_request(b"GET", b"/v1/x", [(b"host", b"u")], b"", Listener())  # type: ignore[arg-type]
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        return conn.state, transport.reading, bool(completed)

    state, reading, completed = asyncio.run(scenario())
    assert completed and state is ConnState.IDLE
    assert reading  # without ReadGate.clear() in _finish: False, and the pool hands it out
