"""The request reader, without asyncio: the same events at every split of its input, and the
same requests (and refusals, where it lets h11 decide) as h11 reading the same bytes."""

from __future__ import annotations

from collections.abc import Iterable

import h11
import pytest

from relay.config import Limits
from relay.http1.known_heads import KnownHeads
from relay.http1.request_head import Rejection
from relay.http1.request_reader import (
    CLOSED,
    CONTINUE,
    NEED_DATA,
    PAUSED,
    Part,
    Reject,
    Request,
    RequestReader,
)

LIMITS = Limits(max_head_size=1024, max_body_size=64)
GET = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n"
POST = b"POST /events/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}"
CHUNKED = (b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
           b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n")
CONTINUED = (b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\nexpect: 100-continue\r\n"
             b"content-length: 3\r\n\r\nxyz")
OLD = b"GET /v1/models HTTP/1.0\r\n\r\n"

Trace = list[tuple[object, ...]]


def read(pieces: Iterable[bytes], eof: bool = False, known: KnownHeads | None = None,
         limits: Limits = LIMITS) -> Trace:
    """What a reader says of ``pieces`` fed in turn (then an EOF), each request answered
    (next_cycle) as soon as it is given."""
    reader = RequestReader(limits, known if known is not None else KnownHeads())
    trace: Trace = []

    def drain() -> bool:
        while True:
            event = reader.next_event()
            if event is NEED_DATA:
                return True
            if event is PAUSED:
                reader.next_cycle()
            elif isinstance(event, Request):
                head = event.head
                trace.append(("request", head.method, head.target, head.http_version,
                              head.keep_alive, event.body, reader.received))
            elif isinstance(event, Reject):
                trace.append(("reject", event.rejection.status,
                              event.head.target if event.head else None))
                return False
            elif event is CLOSED:
                trace.append(("closed",))
                return False
            else:
                assert event is CONTINUE
                trace.append(("continue",))

    for piece in pieces:
        reader.feed(piece)
        if not drain():
            return trace
        if reader.part is Part.DONE:
            reader.next_cycle()
            if not drain():
                return trace
    if eof:
        reader.feed_eof()
        drain()
    return trace


def splits(data: bytes) -> Iterable[list[bytes]]:
    """Every way to cut ``data`` in two, and one byte at a time."""
    for at in range(1, len(data)):
        yield [data[:at], data[at:]]
    yield [data[i:i + 1] for i in range(len(data))]


INPUTS = [
    (GET, True), (POST, True), (GET + POST + GET, True), (CHUNKED, True), (CONTINUED, True),
    (OLD, True), (POST + CHUNKED + POST, False),
    (b"GET / HTTP/1.1\nhost: x\r\n\r\n", False),  # bare LF: 400
    (b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked"
     b"\r\n\r\n", False),  # smuggling: 400
    (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", False),  # head too large: 431
    (b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: 65\r\n\r\n", False),  # 413
    (CHUNKED.replace(b"3;ext=1", b"41"), False),  # chunked over the limit: 413
    (CHUNKED.replace(b"3;ext=1", b"zz"), False),  # bad chunk size: 400
    (b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad : 1\r\n\r\n", False),  # h11 refuses: 400
    (b"GET /v1/%2e%2e%2fx HTTP/1.1\r\nhost: x\r\n\r\n", False),  # its target: 400
    (POST[:-1], True),  # EOF inside the body: 400
    (GET[:-3], True),  # EOF inside the head: h11's 400
]


@pytest.mark.parametrize(("data", "eof"), INPUTS)
def test_the_same_events_at_every_split_of_the_input(data: bytes, eof: bool) -> None:
    whole = read([data], eof)
    assert whole and whole[-1][0] in ("request", "reject", "closed")
    for pieces in splits(data):
        assert read(pieces, eof) == whole, pieces


@pytest.mark.parametrize(("data", "eof"), INPUTS)
def test_a_known_head_reads_as_it_did_the_first_time(data: bytes, eof: bool) -> None:
    known = KnownHeads()
    first = read([data], eof, known)
    assert read([data], eof, known) == first
    assert read(splits(data).__next__(), eof, known) == first


def _h11_requests(data: bytes) -> Trace:
    """h11's reading of ``data``: each request's method, target, version and body."""
    conn, found, body = h11.Connection(h11.SERVER), [], b""
    conn.receive_data(data)
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            found.append((head.method, head.target, head.http_version, body))
            body = b""
            conn.start_next_cycle() if conn.our_state is h11.DONE else None
            if conn.their_state is h11.DONE:
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
        else:
            return found


@pytest.mark.parametrize("data", [GET + POST, CHUNKED + GET, CONTINUED, POST + CHUNKED + POST])
def test_requests_are_what_h11_reads(data: bytes) -> None:
    ours = [(t[1], t[2], t[3], t[5]) for t in read([data]) if t[0] == "request"]
    assert ours == _h11_requests(data)


@pytest.mark.parametrize("data", [
    b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad : 1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nhost: x\r\n\x80bad: 1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nhost: x\r\nb(d: 1\r\n\r\n",
])
def test_what_h11_decides_it_decides_as_h11(data: bytes) -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    with pytest.raises(h11.RemoteProtocolError) as raised:
        while conn.next_event() not in (h11.NEED_DATA, h11.PAUSED):
            pass
    reader = RequestReader(LIMITS, KnownHeads())
    reader.feed(data)
    event = reader.next_event()
    while event is CONTINUE:
        event = reader.next_event()
    assert isinstance(event, Reject)
    assert event.rejection.status == raised.value.error_status_hint
    assert event.rejection.logged == "malformed request (h11)"


def test_a_request_alone_in_its_read_of_a_known_head_is_direct() -> None:
    reader = RequestReader(LIMITS, KnownHeads())
    events = []
    for data in (POST, POST, POST * 2, POST[:-1], b"}"):
        reader.feed(data)
        while (event := reader.next_event()) is not NEED_DATA:
            if isinstance(event, Request):
                events.append(event.direct)
            reader.next_cycle()
    assert events == [False, True, False, False, False]  # (first: parsed; then pipelined, split)


def test_pipelined_bytes_wait_for_the_next_cycle_and_the_eof_behind_them() -> None:
    reader = RequestReader(LIMITS, KnownHeads())
    reader.feed(GET + GET)
    assert isinstance(reader.next_event(), Request)
    reader.feed_eof()
    assert reader.next_event() is PAUSED and reader.part is Part.DONE
    reader.next_cycle()
    assert isinstance(reader.next_event(), Request) and reader.next_event() is CLOSED
    reader.next_cycle()
    assert reader.next_event() is CLOSED


def test_a_refusal_set_by_the_connection_refuses_each_head_once_parsed() -> None:
    reader = RequestReader(LIMITS, KnownHeads())
    reader.refusal = Rejection(503, "busy")
    reader.feed(POST)
    event = reader.next_event()
    assert isinstance(event, Reject) and event.rejection.status == 503
    assert event.head is not None and event.head.path == b"/events/x"
    assert reader.next_event() is NEED_DATA  # (nothing more is read)


def test_received_counts_the_body_bytes_as_they_come() -> None:
    reader = RequestReader(LIMITS, KnownHeads())
    reader.feed(POST[:-1])
    assert reader.next_event() is NEED_DATA and reader.received == 1
    assert reader.part is Part.BODY and reader.head is not None
    reader.feed(b"}" + GET)
    assert isinstance(reader.next_event(), Request) and reader.received == 2
    reader.next_cycle()
    assert isinstance(reader.next_event(), Request) and reader.received == 0
    reader.next_cycle()
    reader.feed(CHUNKED[:-20])
    assert reader.next_event() is NEED_DATA and reader.received == 3
