"""Resumable streams over real sockets: a client leaves and resumes without losing or repeating
a byte, the generation goes on meanwhile, an orphan is stopped, a cancel stops it at once, a
finished stream answers 204, ids never cross tokens, and plain requests stay as they were."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.app import Relay
from relay.config import ResumeLimits, Timeouts

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    SSE_HEAD,
    EventStream,
    H11Client,
    Received,
    ScriptedUpstream,
    UpstreamConn,
    answering,
    chat_body,
    chunked,
    connect,
    scrape,
    wait_until,
)

RESUMABLE = [(b"x-relay-resumable", b"1")]
_ID_LINE = re.compile(rb"id: \d+\n")


def _events(n: int) -> list[bytes]:
    return [b'data: {"n": %d, "text": "token %d"}\n\n' % (i, i) for i in range(n)] + [
        b"data: [DONE]\n\n"]


def _paced(n: int, delay: float = 0.01, endless: bool = False):  # type: ignore[no-untyped-def]
    """An upstream that streams ``n`` events ``delay`` apart, keep-alive; or (``endless``) one
    stream of events until the relay closes the connection, watched as it streams."""

    async def finite(c: UpstreamConn) -> None:
        while await c.read_request():
            c.write(SSE_HEAD)
            for event in _events(n)[:-1]:
                c.write(chunked(event))
                await asyncio.sleep(delay)
            c.write(chunked(_events(n)[-1]) + b"0\r\n\r\n")
        c.closed_at = time.monotonic()  # (EOF between requests: the relay let it go)
        c.closed.set()

    async def forever(c: UpstreamConn) -> None:
        if not await c.read_request():
            return
        watcher = asyncio.ensure_future(c.watch_close())
        c.write(SSE_HEAD)
        i = 0
        while not c.closed.is_set():
            c.write(chunked(b'data: {"n": %d}\n\n' % i))
            i += 1
            await asyncio.sleep(delay)
        await watcher

    return forever if endless else finite


def start(port: int, headers: list[tuple[bytes, bytes]] | None = None,
          resumable: bool = True) -> EventStream:
    return EventStream(port, b"/v1/chat/completions", [*(RESUMABLE if resumable else []),
                                                       *(headers or [])],
                       method=b"POST", body=chat_body(5))


def stream_id(es: EventStream) -> bytes:
    for line in es.head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"x-relay-stream-id":
            return value.strip()
    raise AssertionError("no X-Relay-Stream-Id")


def resume(port: int, sid: bytes, last: int | None = None, query: bytes = b"",
           headers: list[tuple[bytes, bytes]] | None = None) -> EventStream:
    given = [(b"last-event-id", b"%d" % last)] if last is not None else []
    return EventStream(port, b"/v1/streams/" + sid + query, [*given, *(headers or [])])


def cancel(port: int, sid: bytes, headers: list[tuple[bytes, bytes]] | None = None
           ) -> tuple[int, dict[str, object]]:
    client = H11Client(connect(port))
    client.send(b"POST", b"/v1/streams/" + sid + b"/cancel", headers=headers)
    reply = client.read_reply()
    return reply.status, json.loads(reply.body)


def _relay(make_relay: RelayFactory, up: ScriptedUpstream, **limits: float) -> Relay:
    return make_relay(up.url, resume=ResumeLimits(**limits))  # type: ignore[arg-type]


def test_a_client_leaves_after_5_events_and_resumes_with_nothing_lost_or_repeated(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(20, delay=0.02))
    relay = _relay(make_relay, up)
    whole = start(relay.port)
    whole.read(until=lambda s: s.ended)
    first = start(relay.port)
    first.read(5)
    first.sock.close()  # the client leaves; the generation goes on
    conn = up.connections[-1]
    rest = resume(relay.port, stream_id(first), last=int(first.events[4].id))
    rest.read(until=lambda s: s.ended)
    assert next(e.id for e in rest.events) == "6" and rest.events[-1].data == "[DONE]"
    joined = first.payload[:first.payload.index(b"id: 5\n\n") + 7] + rest.payload
    assert _ID_LINE.sub(b"", joined) == _ID_LINE.sub(b"", whole.payload) == b"".join(_events(20))
    assert not conn.closed.is_set()  # read to its end, then pooled: never closed


def test_the_access_log_counts_what_a_resume_delivered(
        scripted: ScriptedFactory, make_relay: RelayFactory, tmp_path: Path) -> None:
    """A resume from the middle of a live stream, and one of the ended stream: each line counts
    the events and body bytes its reader received (replayed and live, [DONE] too), not 0."""
    up = scripted(_paced(20, delay=0.01))
    log = tmp_path / "access.log"
    relay = make_relay(up.url, access_log=str(log))
    first = start(relay.port)
    first.read(5)
    first.sock.close()
    sid = stream_id(first)
    rest = resume(relay.port, sid, last=5)
    rest.read(until=lambda s: s.ended)
    assert len(rest.events) == 16  # ids 6..21: 15 tokens and [DONE]
    path = "/v1/streams/" + sid.decode()

    def lines() -> list[dict[str, object]]:
        return [d for d in map(json.loads, log.read_text().splitlines()) if d["path"] == path]

    assert wait_until(lambda: log.exists() and len(lines()) == 1)  # (written per turn)
    [line] = lines()
    assert line["ended"] == "complete" and line["stream_id"] == sid.decode()
    assert line["events"] == 16 and line["bytes_out"] == rest.received
    again = resume(relay.port, sid, last=9)  # the stream ended: all of it is a replay
    again.read(until=lambda s: s.ended)
    assert wait_until(lambda: len(lines()) == 2)
    second = lines()[1]
    assert second["events"] == second["replayed"] == len(again.events) == 12
    assert second["bytes_out"] == again.received


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leave_after=st.integers(0, 7))
def test_leaving_at_any_position_then_resuming_gives_the_whole_stream(
        scripted: ScriptedFactory, make_relay: RelayFactory, leave_after: int) -> None:
    up = scripted(_paced(6, delay=0.005))
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(leave_after)
    first.sock.close()
    last = int(first.events[leave_after - 1].id) if leave_after else None
    rest = resume(relay.port, stream_id(first), last=last)
    if rest.status == 200:  # (204: it had everything of a stream that already ended)
        rest.read(until=lambda s: s.ended)
    got = [e.data for e in first.events[:leave_after]] + [e.data for e in rest.events]
    assert got == [e.decode()[6:-2] for e in _events(6)]
    ids = [e.id for e in first.events[:leave_after]] + [e.id for e in rest.events]
    assert ids == [str(i) for i in range(1, 8)]


def test_positions_from_the_query_or_none_and_bad_ones(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(4, delay=0.001))
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    sid = stream_id(first)
    everything = resume(relay.port, sid)
    everything.read(until=lambda s: s.ended)
    assert everything.payload == first.payload
    after_two = resume(relay.port, sid, query=b"?last_event_id=2")
    after_two.read(until=lambda s: s.ended)
    assert [e.id for e in after_two.events] == ["3", "4", "5"]
    assert resume(relay.port, sid, last=5).status == 204  # has it all: EventSource stops
    assert resume(relay.port, sid, query=b"?last_event_id=x").status == 400
    assert resume(relay.port, sid, query=b"?last_event_id=%C2%B2").status == 400  # (a digit?)
    assert resume(relay.port, b"rs_unknown").status == 404


def test_nobody_resumes_the_orphan_is_stopped_and_says_so(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(0, delay=0.02, endless=True))
    relay = _relay(make_relay, up, orphan_timeout=0.3)
    first = start(relay.port)
    first.read(2)
    left = time.monotonic()
    first.sock.close()
    conn = up.connections[-1]
    assert conn.closed.wait(5)
    # (uvloop arms a timer from the time cached at its turn's start, a little before the
    # close is seen: it may fire a few ms short of 0.3 s after it, on a busy machine)
    assert conn.closed_at is not None and conn.closed_at - left >= 0.29
    late = resume(relay.port, stream_id(first), last=2)
    late.read(until=lambda s: s.ended)
    assert json.loads(late.events[-1].data)["error"]["code"] == "orphaned"
    assert scrape(relay.port)["relay_resumable_streams_orphaned_total"] == 1


def test_a_reader_keeps_the_generation_from_being_orphaned(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(40, delay=0.02))
    relay = _relay(make_relay, up, orphan_timeout=0.2)
    first = start(relay.port)
    first.read(1)
    follower = resume(relay.port, stream_id(first), last=1)
    first.sock.close()
    follower.read(until=lambda s: s.ended)  # 0.8 s of events with the first client gone
    assert follower.events[-1].data == "[DONE]"


def test_cancel_stops_the_upstream_at_once_and_every_reader_gets_cancelled(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(0, delay=0.02, endless=True))
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(3)
    sid = stream_id(first)
    other = resume(relay.port, sid)
    other.read(3)
    t0 = time.monotonic()
    status, answer = cancel(relay.port, sid)
    conn = up.connections[-1]
    assert conn.closed.wait(2) and conn.closed_at is not None
    assert conn.closed_at - t0 < 0.2
    assert status == 200 and answer["status"] == "cancelled" and answer["id"] == sid.decode()
    for reader in (first, other):
        reader.read(until=lambda s: s.ended)
        assert json.loads(reader.events[-1].data)["error"]["code"] == "cancelled"
    produced = answer["events"]
    assert isinstance(produced, int) and produced >= 3
    assert int(first.events[-1].id) == produced + 1  # the cancelled event is numbered too
    assert cancel(relay.port, sid) == (200, answer)  # idempotent
    assert scrape(relay.port)["relay_resumable_streams_cancelled_total"] == 1


def test_streams_are_bound_to_the_token_that_started_them(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(3, delay=0.001))
    relay = make_relay(up.url, client_tokens=("tok-a", "tok-b"))
    first = start(relay.port, [(b"authorization", b"Bearer tok-a")])
    first.read(until=lambda s: s.ended)
    sid = stream_id(first)
    as_b = [(b"authorization", b"Bearer tok-b")]
    assert resume(relay.port, sid, headers=as_b).status == 404  # never says it exists
    assert cancel(relay.port, sid, as_b)[0] == 404
    assert resume(relay.port, sid).status == 401
    by_query = resume(relay.port, sid, query=b"?access_token=tok-a&last_event_id=3")
    by_query.read(until=lambda s: s.ended)
    assert [e.data for e in by_query.events] == ["[DONE]"]
    assert b"tok-a" not in up.connections[-1].head  # the relay token never goes upstream


def test_without_the_header_nothing_changes_and_the_header_never_goes_upstream(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(3, delay=0.001))
    relay = _relay(make_relay, up)
    plain = start(relay.port, resumable=False)
    plain.read(until=lambda s: s.ended)
    assert plain.payload == b"".join(_events(3))
    assert b"x-relay-stream-id" not in plain.head.lower()
    resumable = start(relay.port)
    resumable.read(until=lambda s: s.ended)
    assert all(b"x-relay-resumable" not in c.head.lower() for c in up.connections)


def test_a_stream_over_its_byte_cap_is_stopped(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(0, delay=0.001, endless=True))
    relay = _relay(make_relay, up, max_bytes=2000)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    assert json.loads(first.events[-1].data)["error"]["code"] == "too_large"
    # (the connection that carried the request: a stray one, with no request, was seen last
    # on a machine running other suites beside this one)
    conn = next(c for c in up.connections if c.request_line)
    assert conn.closed.wait(2)


def test_an_ended_stream_expires_after_the_ttl(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(2, delay=0.001))
    relay = _relay(make_relay, up, ttl=0.2)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    sid = stream_id(first)
    assert wait_until(lambda: resume(relay.port, sid).status == 404, timeout=5)
    metrics = scrape(relay.port)
    assert metrics["relay_resumable_streams_expired_total"] == 1
    assert metrics["relay_resumable_streams"] == 0


def test_a_slow_reader_holds_back_no_one(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(200, delay=0.0))
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(1)
    stalled = resume(relay.port, stream_id(first))  # reads nothing more
    first.read(until=lambda s: s.ended)
    assert len(first.events) == 201
    stalled.read(until=lambda s: s.ended)  # and gets it all when it reads
    assert [e.id for e in stalled.events] == [str(i) for i in range(1, 202)]
    metrics = scrape(relay.port)
    assert metrics["relay_resumable_streams_started_total"] == 1
    assert metrics["relay_resumable_streams_resumed_total"] == 1
    assert metrics["relay_resumable_replayed_events_total"] >= 1


def test_a_resumable_request_that_gets_no_event_stream_is_relayed_as_it_is(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    received: list[Received] = []
    error = (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
             b"content-length: 17\r\n\r\n{\"error\": \"slow\"}")
    up = scripted(answering(received, error))
    relay = _relay(make_relay, up)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(), RESUMABLE)
    reply = client.read_reply()
    assert reply.status == 429 and reply.body == b'{"error": "slow"}'
    assert b"x-relay-stream-id" not in reply.headers
    assert scrape(relay.port)["relay_resumable_streams_started_total"] == 0


def _dies_after(n: int):  # type: ignore[no-untyped-def]
    """An upstream that sends ``n`` events, then resets the connection mid-stream."""

    async def script(c: UpstreamConn) -> None:
        if await c.read_request():
            c.write(SSE_HEAD)
            for event in _events(n)[:-1]:
                c.write(chunked(event))
                await c.writer.drain()
            c.writer.transport.abort()

    return script


def test_an_upstream_that_dies_ends_the_stream_with_its_error_for_every_reader(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_dies_after(3))
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    error = json.loads(first.events[-1].data)["error"]
    assert error["code"] == "upstream_closed" and first.events[-1].id == "4"
    late = resume(relay.port, stream_id(first), last=2)
    late.read(until=lambda s: s.ended)
    assert [e.id for e in late.events] == ["3", "4"] and late.events[-1] == first.events[-1]


def test_a_silent_resumable_stream_gets_heartbeats_between_events(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        if await c.read_request():
            c.write(SSE_HEAD + chunked(_events(1)[0]))
            await c.reader.read(1)  # silent until the relay lets go

    up = scripted(script)
    relay = make_relay(up.url, timeouts=Timeouts(heartbeat=0.05))
    first = start(relay.port)
    first.read(1)
    first.read(until=lambda s: b": heartbeat\n" in s.payload)
    assert first.payload.startswith(b"data: {\"n\": 0")
    assert scrape(relay.port)["relay_heartbeats_total"] >= 1


def test_a_stream_outgrowing_the_memory_is_stopped_and_the_next_one_has_room(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(0, delay=0.005, endless=True))
    relay = _relay(make_relay, up, memory=300)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    assert json.loads(first.events[-1].data)["error"]["code"] == "too_large"
    assert up.connections[0].closed.wait(2)  # its generation stopped
    again = start(relay.port)
    again.read(2)
    assert again.status == 200


def test_an_event_that_never_ends_counts_against_the_byte_cap(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        if await c.read_request():
            watcher = asyncio.ensure_future(c.watch_close())
            c.write(SSE_HEAD + chunked(b"data: "))
            while not c.closed.is_set():
                c.write(chunked(b"x" * 1000))  # one event, never ended
                await asyncio.sleep(0.001)
            await watcher

    up = scripted(script)
    relay = _relay(make_relay, up, max_bytes=20_000)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    assert json.loads(first.events[-1].data)["error"]["code"] == "too_large"
    assert up.connections[0].closed.wait(2)


def test_other_paths_and_methods_under_streams(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    up = scripted(_paced(2, delay=0.001))
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    sid = stream_id(first)
    client = H11Client(connect(relay.port))
    for method, path, status in ((b"GET", b"/v1/streams/" + sid + b"/x", 404),
                                 (b"DELETE", b"/v1/streams/" + sid, 405),
                                 (b"GET", b"/v1/streams/" + sid + b"/cancel", 405),
                                 (b"HEAD", b"/v1/streams/" + sid, 200)):
        client.send(method, path)
        reply = client.read_reply()
        assert reply.status == status, (method, path)
        client.next_cycle()
    assert all(b"/v1/streams" not in c.request_line for c in up.connections)  # never forwarded


def test_the_relays_stream_id_is_the_only_one_and_its_paths_never_go_upstream(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        while await c.read_request():
            c.write(SSE_HEAD.replace(b"\r\n\r\n", b"\r\nx-relay-stream-id: rs_forged\r\n\r\n")
                    + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    up = scripted(script)
    relay = _relay(make_relay, up)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    ids = [line for line in first.head.lower().split(b"\r\n")
           if line.startswith(b"x-relay-stream-id")]
    assert len(ids) == 1 and b"rs_forged" not in ids[0]
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/%73treams/" + stream_id(first) + b"/cancel")
    assert client.read_reply().status == 200  # the relay's own endpoint, decoded
    assert len(up.connections) == 1 and up.connections[0].request_line.startswith(
        b"POST /v1/chat/completions")


def test_a_stream_stopped_in_the_read_that_completes_it_is_closed_not_reused(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        while await c.read_request():  # everything in one write: the cap and the end at once
            c.write(SSE_HEAD + chunked(*_events(20)) + b"0\r\n\r\n")
        c.closed.set()

    up = scripted(script)
    relay = _relay(make_relay, up, max_bytes=300)
    first = start(relay.port)
    first.read(until=lambda s: s.ended)
    assert json.loads(first.events[-1].data)["error"]["code"] == "too_large"
    assert up.connections[0].closed.wait(2)  # closed, never put back in the pool
    plain = start(relay.port, resumable=False)  # a new connection serves the next one
    plain.read(until=lambda s: s.ended)
    assert plain.payload == b"".join(_events(20)) and len(up.connections) == 2
