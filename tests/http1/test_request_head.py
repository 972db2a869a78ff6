"""Malformed and malicious requests: the right status, a closed connection, nothing upstream.

Each case goes over a real socket to a relay in front of a scripted upstream that answers any
request; the upstream must never see a connection for these. The same relay takes a valid
request first, so a harness that could not see forwarding would fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay.app import Relay
from relay.config import KIB, Limits, Timeouts
from relay.http1.request_head import HeadReader, Rejection, check_head

from ..conftest import RelayFactory, ScriptedFactory
from ..support import H11Client, Received, answering, connect, read_until_close

Guarded = tuple[Relay, list[Received]]

H = b"Host: localhost\r\n"
POST = b"POST /v1/chat/completions HTTP/1.1\r\n" + H
TE = b"Transfer-Encoding: chunked\r\n"


def _headers(n: int) -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(n))


CASES: list[tuple[str, bytes, int]] = [
    # -- smuggling: two ways to find the body's end --
    ("content-length and chunked", POST + b"Content-Length: 5\r\n" + TE + b"\r\n0\r\n\r\n", 400),
    ("chunked and content-length", POST + TE + b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("two different content-lengths", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n"
     b"hello!", 400),
    ("two equal content-lengths", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
     400),
    ("content-length list", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("negative content-length", POST + b"Content-Length: -1\r\n\r\n", 400),
    ("content-length with plus", POST + b"Content-Length: +5\r\n\r\nhello", 400),
    ("hex content-length", POST + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("content-length overflow", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("content-length over the body limit", POST + b"Content-Length: 2000000\r\n\r\n", 413),
    ("transfer-encoding gzip only", POST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("transfer-encoding identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("transfer-encoding xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    ("chunked twice in one header", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    ("chunked in two headers", POST + TE + TE + b"\r\n0\r\n\r\n", 400),
    ("empty transfer coding", POST + b"Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", 400),
    ("gzip then chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("space before the colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("HTTP/1.0 with chunked", b"POST /v1/chat/completions HTTP/1.0\r\n" + TE + b"\r\n0\r\n\r\n",
     400),
    # -- chunked request bodies --
    ("chunk size not hex", POST + TE + b"\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("negative chunk size", POST + TE + b"\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with 0x", POST + TE + b"\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size overflow", POST + TE + b"\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk data without CRLF", POST + TE + b"\r\n5\r\nhelloXX0\r\n\r\n", 400),
    ("chunk lines with bare LF (never completes: body deadline)", POST + TE + b"\r\n5\nhello\n",
     408),
    # -- line ends and characters --
    ("bare LF line ends", b"GET /v1/models HTTP/1.1\nHost: relay\n\n", 400),
    ("one bare LF", b"GET /v1/models HTTP/1.1\r\nHost: relay\nX: y\r\n\r\n", 400),
    ("bare CR", b"GET /v1/models HTTP/1.1\r\nHost: relay\rX: y\r\n\r\n", 400),
    ("obs-fold", b"GET /v1/models HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("whitespace before the first header", b"GET /v1/models HTTP/1.1\r\n " + H + b"\r\n", 400),
    ("NUL in a header value", b"GET /v1/models HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("control character in a value", b"GET /v1/models HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n",
     400),
    ("DEL in a value", b"GET /v1/models HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("escape sequence in a value", b"GET /v1/models HTTP/1.1\r\n" + H + b"X: \x1b[31m\r\n\r\n",
     400),
    ("control character in the target", b"GET /v1/models\x01 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space in the target", b"GET /v1/mod els HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("invalid header name", b"GET /v1/models HTTP/1.1\r\n" + H + b"X(y): b\r\n\r\n", 400),
    ("empty header name", b"GET /v1/models HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    ("header name with a space", b"GET /v1/models HTTP/1.1\r\n" + H + b"X Y: b\r\n\r\n", 400),
    ("two spaces in the request line", b"GET  /v1/models HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("blank line before the request", b"\r\nGET /v1/models HTTP/1.1\r\n" + H + b"\r\n", 400),
    # -- versions, methods, targets --
    ("HTTP/1.2", b"GET /v1/models HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("HTTP/2.0 in an HTTP/1 head", b"GET /v1/models HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("HTTP/0.9 request line", b"GET /v1/models\r\n" + H + b"\r\n", 400),
    ("lower-case protocol name", b"GET /v1/models http/1.1\r\n" + H + b"\r\n", 400),
    ("lower-case method", b"get /v1/models HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("unknown method", b"BREW /v1/models HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("method that is not a token", b"GE(T /v1/models HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method with a slash", b"GET/1 /v1/models HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("chunk size of 2^64-1", POST + TE + b"\r\nffffffffffffffff\r\n", 413),
    ("chunk extension with a control character", POST + TE + b"\r\n5;a=\x01\r\nhello\r\n"
     b"0\r\n\r\n", 400),
    ("chunk extension that is not a token", POST + TE + b"\r\n5;a b\r\nhello\r\n0\r\n\r\n",
     400),
    ("an encoded slash in the path", b"GET /v1/a%2Fb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("a fragment in the target", b"GET /v1/models#x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405),
    ("TRACE", b"TRACE /v1/models HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("absolute-form to another host", b"GET http://evil.example/v1/models HTTP/1.1\r\n"
     b"Host: evil.example\r\n\r\n", 400),
    ("absolute-form https", b"POST https://api.openai.com/v1/chat/completions HTTP/1.1\r\n" + H
     + b"Content-Length: 0\r\n\r\n", 400),
    ("target without a slash", b"GET v1/models HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 400),
    # -- Host --
    ("no Host in HTTP/1.1", b"GET /v1/models HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET /v1/models HTTP/1.1\r\n" + H + b"Host: evil.example\r\n\r\n", 400),
    ("empty Host", b"GET /v1/models HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("Host with userinfo", b"GET /v1/models HTTP/1.1\r\nHost: user@evil.example\r\n\r\n", 400),
    ("Host with a path", b"GET /v1/models HTTP/1.1\r\nHost: relay/evil\r\n\r\n", 400),
    ("Host with a space", b"GET /v1/models HTTP/1.1\r\nHost: relay evil\r\n\r\n", 400),
    # -- sizes and counts --
    ("1,001 headers", b"GET /v1/models HTTP/1.1\r\n" + H + _headers(1001) + b"\r\n", 431),
    ("101 headers", b"GET /v1/models HTTP/1.1\r\n" + H + _headers(100) + b"\r\n", 431),
    ("header line over 8 KiB", b"GET /v1/models HTTP/1.1\r\n" + H + b"X: " + b"a" * 8200
     + b"\r\n\r\n", 431),
    ("request line over 8 KiB", b"GET /v1/" + b"a" * 8200 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("head over 32 KiB in one read", b"GET /v1/models HTTP/1.1\r\n" + H
     + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 7000) for i in range(5)) + b"\r\n", 431),
    ("head over 32 KiB that never ends", b"GET /v1/models HTTP/1.1\r\n" + H
     + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 7000) for i in range(5)), 431),
]


def test_table_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.fixture
def guarded(scripted: ScriptedFactory, make_relay: RelayFactory) -> Iterator[Guarded]:
    """A relay (short request deadlines, 1 MB body limit) in front of an upstream that answers
    every request 200 and records (head, body) of each; one valid request proves that
    forwarding is seen (its pooled connection stays open for the cases to reuse)."""
    received: list[Received] = []
    up = scripted(answering(received))
    relay = make_relay(up.url, timeouts=Timeouts(request_head=1, request_body=0.5),
                       limits=Limits(max_body_size=1_000_000))
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/v1/models")
    assert client.read_reply().status == 200
    assert len(received) == 1
    received.clear()
    yield relay, received


def _status(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


@pytest.mark.parametrize(("name", "raw", "status"), CASES, ids=[c[0] for c in CASES])
def test_malformed_request_rejected_and_nothing_upstream(
        name: str, raw: bytes, status: int, guarded: Guarded) -> None:
    relay, received = guarded
    sock = connect(relay.port, timeout=5)
    sock.sendall(raw)
    reply = read_until_close(sock)  # the relay answers, then closes
    assert _status(reply) == status, reply[:300]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert b'"error"' in body and b"invalid_request_error" in body
    assert received == []  # nothing of it reached the upstream


def test_request_trailers_are_dropped(guarded: Guarded) -> None:
    relay, received = guarded
    sock = connect(relay.port, timeout=5)
    sock.sendall(POST + TE + b"\r\n5\r\nhello\r\n0\r\nAuthorization: Bearer smuggled\r\n"
                 b"X-Trailer: 1\r\n\r\n")
    reply = H11Client(sock).read_reply()
    assert reply.status == 200
    [(_, head, _, body)] = [(r.request_line, r.head, r.headers, r.body) for r in received]
    assert body == b"hello" and b"content-length: 5\r\n" in head.lower()
    assert b"smuggled" not in head and b"x-trailer" not in head.lower()
    assert b"transfer-encoding" not in head.lower()


def test_a_bad_pipelined_request_is_caught_after_a_good_one(
        guarded: Guarded) -> None:
    """The second head sits in h11's buffer when the first response ends: it is checked too."""
    relay, received = guarded
    sock = connect(relay.port, timeout=5)
    sock.sendall(b"GET /v1/models HTTP/1.1\r\n" + H + b"\r\n"
                 + b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n" + TE
                 + b"\r\n0\r\n\r\n")
    replies = read_until_close(sock)
    assert replies.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 400 " in replies
    assert len(received) == 1 and received[0].head.startswith(b"GET ")


def test_slowloris_head_gets_408(guarded: Guarded) -> None:
    relay, received = guarded
    sock = connect(relay.port, timeout=5)
    sock.sendall(b"GET /v1/models HTTP/1.1\r\n")
    for _ in range(3):  # a byte now and then never extends the head deadline (1 s here)
        try:
            sock.sendall(b"X")
        except OSError:
            break
        sock.settimeout(0.4)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert data.startswith(b"HTTP/1.1 408 ")
        break
    else:
        sock.settimeout(5)
        assert read_until_close(sock).startswith(b"HTTP/1.1 408 ")
    assert received == []


# -- the sans-IO pieces ---------------------------------------------------------------------


def test_head_reader_finds_the_end_across_reads_and_counts_itself() -> None:
    head = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for split in range(1, len(head)):
        reader = HeadReader(1000)
        first = reader.feed(head[:split])
        assert first == 0 or (split == len(head) and first == len(head))
        assert reader.feed(head[split:] + b"BODY") == len(head)
    reader = HeadReader(40)
    assert reader.feed(b"GET / HTTP/1.1\r\n") == 0
    assert reader.feed(b"X: " + b"a" * 30) == Rejection(431, "request head too large")
    assert isinstance(HeadReader(1000).feed(b"GET / HTTP/1.1\nHost: a\n"), Rejection)


def test_check_head_accepts_ordinary_requests() -> None:
    limits = Limits()
    for head in (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                 b"Content-Length: 12\r\nAuthorization: Bearer x\r\n\r\n",
                 b"GET /healthz HTTP/1.0\r\n\r\n",
                 b"POST /v1/x HTTP/1.1\r\nHost: [::1]:8080\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b"GET /v1/models?x=1 HTTP/1.1\r\nhost: api.example\r\nX: a\tb\r\n\r\n"):
        assert check_head(head, limits) is None, head
    assert check_head(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X: " + b"a" * (8 * KIB)
                      + b"\r\n\r\n",
                      Limits(max_line_size=16 * KIB)) is None

