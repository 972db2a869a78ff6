"""Known heads: what is kept, for which bytes, and for how many (the client's use of them, and
that a known head is answered exactly as h11's parse of it, are in
tests/net/test_client_fuzz.py::test_a_head_known_before_is_answered_as_h11_answered_it)."""

from __future__ import annotations

import pytest

from relay.http1.headers import header_value
from relay.http1.known_heads import KnownHeads, ParsedHead
from relay.http1.messages import Request
from relay.http1.request_head import Rejection

HEADERS = [(b"host", b"relay"), (b"content-length", b"12")]


def parsed(target: bytes = b"/v1/x", headers: list[tuple[bytes, bytes]] | None = None,
           version: bytes = b"1.1") -> ParsedHead:
    head = ParsedHead.of(b"POST", target, HEADERS if headers is None else headers, version,
                         False)
    assert isinstance(head, ParsedHead)
    return head


def test_a_head_says_what_the_request_needs() -> None:
    head = parsed(b"/v1/a/../b//c?x=1")
    assert (head.target, head.length, head.chunked, head.keep_alive) == (
        b"/v1/b/c?x=1", 12, False, True)
    assert not parsed(version=b"1.0").keep_alive
    assert not parsed(headers=[(b"connection", b"close")]).keep_alive
    chunked = parsed(headers=[(b"transfer-encoding", b"chunked")])
    assert chunked.chunked and chunked.length == 0
    refused = ParsedHead.of(b"GET", b"/v1/%2f", HEADERS, b"1.1", False)
    assert isinstance(refused, Rejection) and refused.status == 400


def test_each_request_gets_its_own_headers_list() -> None:
    head = parsed()
    one, two = head.request(), head.request()
    one.headers.append((b"x", b"y"))
    assert two.headers == HEADERS and head.request().headers == HEADERS


def test_only_the_same_bytes_find_a_head() -> None:
    known = KnownHeads()
    raw = b"POST /v1/x HTTP/1.1\r\nhost: relay\r\ncontent-length: 12\r\n\r\n"
    known.add(raw, parsed())
    assert known.get(raw) == parsed()
    assert known.get(raw.replace(b"12", b"13")) is None
    assert known.get(raw.upper()) is None


@pytest.mark.parametrize("why", ["chunked", "too large", "turned off"])
def test_what_cannot_be_reused_is_never_kept(why: str) -> None:
    known = KnownHeads(entries=0 if why == "turned off" else 10, max_head=100)
    head = parsed(headers=[(b"transfer-encoding", b"chunked")]) if why == "chunked" else parsed()
    raw = b"x" * (101 if why == "too large" else 100)
    known.add(raw, head)
    assert known.get(raw) is None and len(known) == 0


def test_the_oldest_goes_first_when_full() -> None:
    known = KnownHeads(entries=3)
    for i in range(3):
        known.add(b"head %d" % i, parsed(b"/v1/%d" % i))
    known.add(b"head 0", parsed(b"/v1/0"))  # (again: no room needed)
    assert len(known) == 3
    known.add(b"head 3", parsed(b"/v1/3"))
    assert len(known) == 3 and known.get(b"head 0") is None
    assert [known.get(b"head %d" % i) is not None for i in (1, 2, 3)] == [True, True, True]


def test_a_request_finds_a_header_as_header_value_does() -> None:
    headers = [(b"x-a", b"1"), (b"host", b"relay"), (b"x-a", b"2")]
    request = Request(b"GET", b"/v1/x?q", headers, b"1.1")
    for name in (b"x-a", b"host", b"missing"):
        assert request.header(name) == header_value(headers, name)
    assert request.path == b"/v1/x"
    known = parsed(headers=headers).request()
    assert known.header(b"x-a") == b"1" and known.header(b"content-length") is None
