"""One resumable stream and its readers, on fake transports: numbered events to every reader
at its own pace, comments only to readers that are caught up, and one ending, numbered."""

from __future__ import annotations

import json

from relay.config import ResumeLimits
from relay.http1.messages import Request
from relay.net.exchange import Exchange, ExchangeState
from relay.net.flow import WriteFlow
from relay.streams.registry import Streams
from relay.streams.stream import Follower, ResumableStream

from ..support import FakeLoop, FakeTransport
from ..support.sse_parser import SSEParser


class _Owner:
    def exchange_ended(self, ex: Exchange) -> None:
        pass


def _payload(transport: FakeTransport) -> bytes:
    """What a reader received, chunk framing undone (and the last chunk: b"<end>")."""
    body, out, pos = transport.take(), b"", 0
    while pos < len(body):
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        out += body[eol + 2:eol + 2 + size] if size else b"<end>"
        pos = eol + 4 + size
    return out


def _reader(stream: ResumableStream, pos: int = 0, ended: list[str] | None = None
            ) -> tuple[Follower, FakeTransport, Exchange]:
    transport = FakeTransport()
    request = Request(b"GET", b"/v1/streams/x", [], b"1.1", keep_alive=True)
    ex = Exchange(_Owner(), request, transport, WriteFlow())  # type: ignore[arg-type]
    ex.start(200, [(b"content-type", b"text/event-stream")])
    transport.take()
    log = ended if ended is not None else []
    follower = Follower(ex, stream, pos, lambda _f, how: log.append(how))
    stream.add(follower)
    return follower, transport, ex


def _stream(fake_loop: FakeLoop, **limits: int) -> tuple[Streams, ResumableStream]:
    streams = Streams(fake_loop, ResumeLimits(**limits))  # type: ignore[arg-type]
    stream = streams.create(None)
    assert stream is not None
    return streams, stream


def test_every_reader_gets_the_numbered_events_at_its_own_pace(fake_loop: FakeLoop) -> None:
    _, stream = _stream(fake_loop)
    _fast, fast_t, _ = _reader(stream)
    slow, slow_t, slow_ex = _reader(stream)
    slow.on_client_paused()
    stream.feed([b"data: a\n\ndata: b\n", b"\n"])
    assert _payload(fast_t) == b"data: a\nid: 1\n\ndata: b\nid: 2\n\n"
    assert slow_t.out == b""  # held in the stream, not in the reader's buffer
    stream.feed([b"data: c\n\n"])
    slow.on_client_resumed()
    assert [e.id for e in SSEParser().feed(_payload(slow_t))] == ["1", "2", "3"]
    assert _payload(fast_t) == b"data: c\nid: 3\n\n"
    assert slow_ex.state is ExchangeState.SENDING


def test_comments_go_to_readers_that_are_caught_up_and_are_not_kept(
        fake_loop: FakeLoop) -> None:
    _, stream = _stream(fake_loop)
    _live, live_t, _ = _reader(stream)
    behind, behind_t, _ = _reader(stream)
    behind.on_client_paused()
    stream.feed([b"data: a\n\n: keep-alive\n\n"])
    assert _payload(live_t) == b"data: a\nid: 1\n\n: keep-alive\n\n"
    behind.on_client_resumed()
    assert _payload(behind_t) == b"data: a\nid: 1\n\n"
    assert stream.events == [b"data: a\nid: 1\n\n"]


def test_the_relay_ends_a_stream_with_one_numbered_event_and_clean_ends(
        fake_loop: FakeLoop) -> None:
    streams, stream = _stream(fake_loop)
    stopped: list[bool] = []
    stream.stop_upstream = lambda: stopped.append(True)
    ended: list[str] = []
    _, transport, ex = _reader(stream, ended=ended)
    stream.feed([b"data: a\n\ndata: to"])  # a torn event: closed before ours
    stream.end("stopped", "cancelled")
    stream.end("again", "cancelled")  # once only
    assert stopped == [True]
    payload = _payload(transport)
    events = SSEParser().feed(payload.replace(b"<end>", b""))
    assert [e.id for e in events] == ["1", "2", "3"]
    assert json.loads(events[-1].data)["error"]["code"] == "cancelled"
    assert payload.endswith(b"<end>") and ex.state is ExchangeState.ENDED
    assert ended == ["complete"] and stream.status == "cancelled" and stream.produced == 1
    assert not stream.followers and streams.live == 0


def test_a_completed_stream_ends_readers_after_the_tail(fake_loop: FakeLoop) -> None:
    _, stream = _stream(fake_loop)
    _, transport, _ = _reader(stream)
    stream.feed([b"data: a\n\ndata: no blank line"])
    stream.complete()
    assert _payload(transport) == b"data: a\nid: 1\n\ndata: no blank line<end>"
    _late, late_t, _ = _reader(stream, pos=1)  # everything read: ends at once
    assert _payload(late_t) == b"data: no blank line<end>"


def test_over_its_byte_cap_the_stream_is_stopped_once_the_read_returns(
        fake_loop: FakeLoop) -> None:
    _, stream = _stream(fake_loop, max_bytes=30)
    stopped: list[bool] = []
    stream.stop_upstream = lambda: stopped.append(True)
    _, transport, _ = _reader(stream)
    stream.feed([b"data: 0123456789\n\n", b"data: 0123456789\n\n"])
    assert stream.status == "too_large" and stopped == []  # (inside the upstream's read)
    fake_loop.run_soon()
    assert stopped == [True]
    stream.feed([b"data: later\n\n"])  # nothing more is taken
    assert b"later" not in transport.out


def test_heartbeats_only_between_events_and_only_to_readers_caught_up(
        fake_loop: FakeLoop) -> None:
    _, stream = _stream(fake_loop)
    _live, live_t, _ = _reader(stream)
    paused, paused_t, _ = _reader(stream)
    paused.on_client_paused()
    stream.feed([b"data: a\n\ndata: b"])
    live_t.take()
    assert not stream.heartbeat()  # inside event 2
    stream.feed([b"\n\n"])
    live_t.take()
    assert stream.heartbeat()
    assert _payload(live_t) == b": heartbeat\n" and paused_t.out == b""


def test_a_reader_that_leaves_is_off_the_stream_and_the_generation_goes_on(
        fake_loop: FakeLoop) -> None:
    _, stream = _stream(fake_loop)
    ended: list[str] = []
    _, _, ex = _reader(stream, ended=ended)
    ex.client_gone()
    assert ended == ["client_disconnect"] and not stream.followers and stream.live
    stream.feed([b"data: a\n\n"])
    assert len(stream.events) == 1


def test_a_drain_in_the_middle_of_a_big_event_ends_after_it_and_names_it(
        fake_loop: FakeLoop) -> None:
    """With Redis a draining reader is told where to resume. In the middle of an event written
    by slices (its client paused), it gets the event's rest first, as its client takes it, and
    then the resume event naming that event: told at once, it would read half an event, and
    named by the event before, a resume would repeat it."""
    streams, stream = _stream(fake_loop)
    streams.shared = True
    follower, transport, _ex = _reader(stream)
    stream.feed([b"data: small\n\n"])
    write = transport.write

    def pausing(data: bytes) -> None:  # the client stops taking after the first write
        write(data)
        follower.on_client_paused()

    transport.write = pausing  # type: ignore[method-assign]
    stream.feed([b"data: " + b"x" * 200_000 + b"\n\n"])
    transport.write = write  # type: ignore[method-assign]
    follower.on_draining()
    got = _payload(transport)
    assert b"relay.resume" not in got and len(got) < 200_000  # (waits for the client)
    follower.on_client_resumed()
    got += _payload(transport)
    events = SSEParser().feed(got.removesuffix(b"<end>"))
    assert [e.id for e in events[:2]] == ["1", "2"] and events[2].event == "relay.resume"
    assert json.loads(events[2].data)["last_event_id"] == "2" and got.endswith(b"<end>")
