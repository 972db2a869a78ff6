"""Fuzzing the server protocol: arbitrary bytes, split arbitrarily, then EOF.

The connection runs with the fake transport and the fake clock (no sockets: thousands of
connections per second), its handler tasks on a real loop, and the handler stands for the
upstream. After each piece the harness waits until the handler tasks and deferred callbacks
have run (on the tasks themselves, not a number of loop turns). For every input: no
exception escapes (the loop's exception handler and the protocol's error log stay empty), the
connection ends closed, and the handler is called only with requests that pass independent
checks; for valid requests with one known defect injected, it is never called and the client
gets a 4xx/5xx.

Every connection of a run shares one :class:`~relay.http1.known_heads.KnownHeads`, as the
connections of one listener do, so heads seen in earlier examples are answered from it; and
every input is also run twice, the second time with its heads known: the client sees the same
bytes and the handler the same requests as when h11 parsed them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.config import Limits, Timeouts
from relay.http1.known_heads import KnownHeads
from relay.net.client import ClientConnection
from relay.net.exchange import Exchange

from ..support import FakeLoop, FakeTransport

_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]+")


def _independently_valid(ex: Exchange) -> bool:
    req = ex.request
    if req.method not in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"):
        return False
    if not req.target.startswith(b"/") or req.http_version not in (b"1.0", b"1.1"):
        return False
    names = [n for n, _ in req.headers]
    if names.count(b"host") > 1 or names.count(b"content-length") > 1:
        return False
    if b"content-length" in names and b"transfer-encoding" in names:
        return False
    for name, value in req.headers:
        if name == b"host" and not _HOST.fullmatch(value):
            return False
        if any((b < 0x20 and b != 0x09) or b == 0x7F for b in value):
            return False
    return True


class Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(ctx))
        self.known = KnownHeads()  # (shared by every connection, as a listener's are)

    def run(self, pieces: list[bytes], known: KnownHeads | None = None
            ) -> tuple[FakeTransport, list[Exchange]]:
        return self.loop.run_until_complete(self._run(pieces, known))

    async def _run(self, pieces: list[bytes], known: KnownHeads | None = None
                   ) -> tuple[FakeTransport, list[Exchange]]:
        seen: list[Exchange] = []
        known = self.known if known is None else known

        async def handler(ex: Exchange) -> None:
            seen.append(ex)
            ex.respond(200, b"{}")

        clock = FakeLoop()
        conn = ClientConnection(handler, Limits(max_body_size=4096, max_head_size=4096),
                                Timeouts(request_head=5, request_body=5, keepalive=5), set(),
                                clock, None, known)  # type: ignore[arg-type]
        transport = FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for piece in pieces:
            if transport.closed:
                break
            if transport.reading:
                conn.data_received(piece)
            await clock.settle()
        if not transport.closed:
            conn.eof_received()
        await clock.settle()
        conn.connection_lost(None)
        await clock.settle()
        return transport, seen

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


VALID = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\ncontent-type: application/json"
         b"\r\ncontent-length: 2\r\n\r\n{}")
PREFIXES = [b"", b"POST /v1/chat/completions HTTP/1.1\r\n",
            b"GET /v1/models HTTP/1.1\r\nHost: a\r\n",
            b"POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", VALID]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check_common(harness: Harness, transport: FakeTransport, caplog: Any) -> None:
    assert harness.loop_errors == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert transport.closed  # every connection ends: answered then closed, or closed
    if transport.out:
        assert transport.out.startswith(b"HTTP/1.1 ") or transport.out.startswith(b"HTTP/1.0 ")


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), tail=st.binary(max_size=600),
       cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_arbitrary_bytes(harness: Harness, caplog: Any, prefix: bytes, tail: bytes,
                         cuts: list[int]) -> None:
    caplog.clear()
    transport, seen = harness.run(_split(prefix + tail, cuts))
    _check_common(harness, transport, caplog)
    for ex in seen:
        assert _independently_valid(ex), ex.request


DEFECTS = [
    b"Transfer-Encoding: chunked\r\n",  # beside content-length
    b"Content-Length: 3\r\n",  # a second, different length
    b"X: a\r\n b\r\n",  # obs-fold
    b"X: a\nY: b\r\n",  # bare LF
    b"X: a\rb\r\n",  # bare CR
    b"X: a\x00b\r\n",  # NUL
    b"X: \x1b[0m\r\n",  # control character
    b"Host: evil.example\r\n",  # a second Host
    b"X(y): b\r\n",  # invalid name
    b"X : b\r\n",  # space before the colon
]


@FUZZ
@given(defect=st.sampled_from(DEFECTS), position=st.integers(min_value=1, max_value=4),
       cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_one_defect_never_reaches_the_handler(harness: Harness, caplog: Any, defect: bytes,
                                              position: int, cuts: list[int]) -> None:
    caplog.clear()
    head, _, body = VALID.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    position = min(position, len(lines))
    lines.insert(position, defect.removesuffix(b"\r\n"))
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    transport, seen = harness.run(_split(raw, cuts))
    _check_common(harness, transport, caplog)
    assert seen == []
    assert re.match(rb"HTTP/1\.1 (4|5)\d\d ", bytes(transport.out)), bytes(transport.out[:100])


def _seen(exchanges: list[Exchange]) -> list[tuple[Any, ...]]:
    return [(r.method, r.target, r.headers, r.http_version, r.keep_alive, r.body)
            for r in (ex.request for ex in exchanges)]


VARIANTS = [b"Connection: close\r\n", b"Expect: 100-continue\r\n", b"Connection: upgrade\r\n"
            b"Upgrade: h2c\r\n", b"X-Request-Id: abc\r\n", b"Content-Length: 0\r\n",
            b"Transfer-Encoding: chunked\r\n"]
TARGETS = [b"/v1/chat/completions", b"/v1/a/../b", b"/v1/%2e%2e/x", b"/v1//x?q=1", b"/v1/%2f",
           b"/events/c1", b"*", b"http://a/v1/x"]


@FUZZ
@given(method=st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"TRACE"]),
       target=st.sampled_from(TARGETS), version=st.sampled_from([b"1.1", b"1.0", b"2.0"]),
       extra=st.lists(st.sampled_from(VARIANTS), max_size=3), body=st.binary(max_size=40),
       repeat=st.integers(min_value=1, max_value=3), tail=st.binary(max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=4))
def test_a_head_known_before_is_answered_as_h11_answered_it(
        harness: Harness, caplog: Any, method: bytes, target: bytes, version: bytes,
        extra: list[bytes], body: bytes, repeat: int, tail: bytes, cuts: list[int]) -> None:
    caplog.clear()
    chunked = b"Transfer-Encoding: chunked\r\n" in extra
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked and body else b"0\r\n\r\n"
    length = b"" if chunked or b"Content-Length: 0\r\n" in extra else (
        b"Content-Length: %d\r\n" % len(body))
    request = (b"%s %s HTTP/%s\r\nHost: relay\r\n%s%s\r\n%s" % (
        method, target, version, b"".join(extra), length,
        framed if chunked else (b"" if b"Content-Length: 0\r\n" in extra else body)))
    pieces = _split(request * repeat + tail, cuts)
    known = KnownHeads()
    first, seen_first = harness.run(pieces, known)  # h11 parses (and the heads become known)
    lookup, hits = known.get, []
    known.get = lambda head: hits.append(lookup(head)) or hits[-1]
    second, seen_second = harness.run(pieces, known)  # the same bytes, their heads known
    _check_common(harness, second, caplog)
    assert bytes(second.out) == bytes(first.out)
    assert _seen(seen_second) == _seen(seen_first)
    if seen_first and not chunked and len(known):
        assert any(hits)  # (the second run did take a head from what was known)
