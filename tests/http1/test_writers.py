"""Client response heads and body writers; h11 is the oracle for the heads' bytes."""

from __future__ import annotations

import itertools

import h11
import pytest

from relay.http1.writers import (
    LAST_CHUNK,
    ChunkedBody,
    CloseBody,
    LengthBody,
    NoBody,
    chunk,
    reason_phrase,
    request_head,
    start_response,
)

HEADERS = [(b"content-type", b"text/event-stream"), (b"x-request-id", b"abc"),
           (b"Cache-Control", b"no-cache")]


def _h11_head(method: bytes, version: bytes, close: bool, status: int, length: int | None
              ) -> tuple[bytes, bool]:
    """What h11 writes for this response to this request (the head the relay sent when h11
    serialized responses), and whether h11 keeps the connection alive afterwards."""
    conn = h11.Connection(h11.SERVER)
    hdrs = b"host: x\r\n" + (b"connection: close\r\n" if close else b"")
    conn.receive_data(method + b" /v1/x HTTP/" + version + b"\r\n" + hdrs + b"\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    keep_alive = conn.their_state is h11.DONE
    given = list(HEADERS)
    no_body = method == b"HEAD" or status in (204, 304)
    if length is not None:
        given.append((b"content-length", b"%d" % length))
    elif not no_body and version == b"1.1":
        given.append((b"transfer-encoding", b"chunked"))
    head = conn.send(h11.Response(status_code=status, headers=given,
                                  reason=reason_phrase(status)))
    assert head is not None
    return head, keep_alive


CASES = list(itertools.product([b"GET", b"HEAD", b"POST"], [b"1.0", b"1.1"], [False, True],
                               [200, 204, 304, 404, 599], [None, 0, 17]))


@pytest.mark.parametrize(("method", "version", "close", "status", "length"), CASES)
def test_heads_are_what_h11_writes(method: bytes, version: bytes, close: bool, status: int,
                                   length: int | None) -> None:
    expected, keep_alive = _h11_head(method, version, close, status, length)
    head, _ = start_response(method, version, status, reason_phrase(status), HEADERS, length,
                             keep_alive)
    assert head == expected


def test_the_writer_follows_the_framing() -> None:
    def writer(method: bytes, version: bytes, status: int, length: int | None) -> type:
        return type(start_response(method, version, status, b"", [], length, True)[1])

    assert writer(b"GET", b"1.1", 200, None) is ChunkedBody
    assert writer(b"GET", b"1.0", 200, None) is CloseBody
    assert writer(b"GET", b"1.1", 200, 5) is LengthBody
    assert writer(b"HEAD", b"1.1", 200, None) is NoBody
    assert writer(b"HEAD", b"1.1", 200, 5) is NoBody
    assert writer(b"GET", b"1.1", 204, None) is NoBody
    assert writer(b"GET", b"1.1", 304, 0) is NoBody


def test_chunk_framing_never_copies() -> None:
    payload = b"x" * 300
    size, data, crlf = chunk(payload)
    assert size == b"12c\r\n" and data is payload and crlf == b"\r\n"
    body = ChunkedBody()
    assert body.frame([payload]) == (b"12c\r\n", payload, b"\r\n")
    assert list(body.frame([b"ab", b"c"])) == [b"2\r\n", b"ab", b"\r\n", b"1\r\n", b"c", b"\r\n"]
    assert body.end() == LAST_CHUNK
    assert body.appendable and body.chunked and not body.closes


def test_length_body_refuses_more_or_less_than_declared() -> None:
    body = LengthBody(5)
    assert list(body.frame([b"abc"])) == [b"abc"]
    with pytest.raises(ValueError, match="short"):
        body.end()
    with pytest.raises(ValueError, match="more"):
        body.frame([b"def"])
    exact = LengthBody(2)
    exact.frame([b"ok"])
    assert exact.end() == b"" and not exact.appendable


def test_close_and_no_body() -> None:
    close = CloseBody()
    assert list(close.frame([b"a"])) == [b"a"] and close.closes and close.appendable
    assert list(NoBody().frame([b"dropped"])) == [] and NoBody().end() == b""


def test_reason_phrases() -> None:
    assert reason_phrase(200) == b"OK"
    assert reason_phrase(504) == b"Gateway Timeout"
    assert reason_phrase(599) == b""


@pytest.mark.parametrize("headers", [
    [(b"host", b"api.example")],
    [(b"host", b"api.example"), (b"content-type", b"application/json"),
     (b"content-length", b"93"), (b"accept-encoding", b"identity"),
     (b"authorization", b"Bearer sk-x"), (b"x-request-id", b"0123abcd")],
    [(b"accept", b"*/*"), (b"host", b"h:8080"), (b"x-odd", b"a  b\tc")],  # Host not first
])
@pytest.mark.parametrize(("method", "target"), [(b"POST", b"/v1/chat/completions"),
                                                (b"GET", b"/v1/models?limit=2"),
                                                (b"HEAD", b"/v1/x")])
def test_request_heads_are_what_h11_writes(method: bytes, target: bytes,
                                           headers: list[tuple[bytes, bytes]]) -> None:
    expected = h11.Connection(h11.CLIENT).send(
        h11.Request(method=method, target=target, headers=headers))
    assert request_head(method, target, headers) == expected
