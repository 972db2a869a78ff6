"""Chunked request bodies checked on the raw bytes, stricter than h11: alone, then over real
sockets (nothing reaches the upstream, the connection closes)."""

from __future__ import annotations

import itertools

import pytest

from relay.config import Limits
from relay.http1.request_body import MAX_EXTENSIONS, ChunkedRequestCheck, RequestBody

from ..conftest import RelayFactory, ScriptedFactory
from ..support import Received, answering, connect, read_until_close

LIMIT = 1000


def _verdict(body: bytes, splits: int = 1) -> int | None:
    """The status the checker gives ``body`` fed in ``splits`` pieces (None: accepted)."""
    check = ChunkedRequestCheck(LIMIT)
    step = max(1, len(body) // splits)
    for i in range(0, len(body), step):
        rejection = check.feed(body[i:i + step])
        if rejection is not None:
            return rejection.status
    return None


GOOD = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;name\r\nhello\r\n0\r\n\r\n",
    b"5;name=value;other=\"quoted \\\" string\"\r\nhello\r\n0\r\n\r\n",
    b"5 ; a = b\r\nhello\r\n0\r\n\r\n",  # BWS around the extension
    b"A\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n",
    b"0\r\n\r\nGET /next HTTP/1.1\r\n",  # what follows the body is the next request's
]
BAD = [
    (b"ffffffffffffffff\r\n", 413),  # 2^64-1: refused at once, not waited for
    (b"3e9\r\n", 413),  # 1001 > the limit
    (b"200\r\n" + b"x" * 512 + b"\r\n200\r\n", 413),  # the sizes add up past the limit
    (b"11111111111111111\r\n", 400),  # 17 hex digits
    (b"0x5\r\nhello\r\n", 400),
    (b"+5\r\nhello\r\n", 400),
    (b"5\r\nhelloXX", 400),  # data not followed by CRLF
    (b"5;na me\r\nhello\r\n", 400),  # not a token
    (b"5;a=\x01\r\nhello\r\n", 400),  # a control character
    (b"5;a=\"open\r\nhello\r\n", 400),  # an unterminated quoted-string
    (b"5;" + b"a" * (MAX_EXTENSIONS + 1) + b"\r\nhello\r\n", 400),
    (b"5" + b";a=b" * 300 + b"\r\n", 400),  # extensions past the total cap
    (b"1" * 5000, 400),  # a size line that never ends
]


@pytest.mark.parametrize("body", GOOD)
@pytest.mark.parametrize("splits", [1, 3, 1000])
def test_good_bodies_pass(body: bytes, splits: int) -> None:
    assert _verdict(body, splits) is None


@pytest.mark.parametrize(("body", "status"), BAD)
@pytest.mark.parametrize("splits", [1, 4])
def test_bad_bodies_are_refused(body: bytes, status: int, splits: int) -> None:
    assert _verdict(body, splits) == status


def test_the_body_collects_up_to_its_limit() -> None:
    body = RequestBody(5, chunked=False)
    assert body.add(b"abc") and body.add(b"de")
    assert not body.add(b"f")


@pytest.mark.parametrize("cuts", [(), (1,), (3,), (4,), (2, 5), (1, 2, 3, 4, 5, 6, 7)])
def test_a_length_body_is_taken_from_raw_bytes_and_what_follows_is_given_back(
        cuts: tuple[int, ...]) -> None:
    """However the reads split it, the body is its 4 bytes and the rest comes back whole."""
    wire, edges = b"abcdGET /next", [0, *cuts, len(b"abcdGET /next")]
    body, rests = RequestBody(100, chunked=False, length=4), []
    for a, b in itertools.pairwise(edges):
        rest = body.take(wire[a:b]) if not rests else None
        if rest is not None:
            rests.append(rest + wire[b:])
    assert body.join() == b"abcd" and rests == [b"GET /next"]
    assert RequestBody(100, chunked=False).take(b"GET /") == b"GET /"  # no body at all


@pytest.mark.parametrize(("chunks", "status"), [
    (b"ffffffffffffffff\r\n", 413),
    (b"5;a=\x01b\r\nhello\r\n0\r\n\r\n", 400),
    (b"5;" + b"x" * 2000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    (b"5z\r\nhello\r\n0\r\n\r\n", 400),
])
def test_over_the_wire_nothing_goes_upstream(chunks: bytes, status: int,
                                             scripted: ScriptedFactory,
                                             make_relay: RelayFactory) -> None:
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url, limits=Limits(max_body_size=LIMIT))
    sock = connect(relay.port)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
                 b"transfer-encoding: chunked\r\n\r\n" + chunks)
    reply = read_until_close(sock)  # answered at once, then closed
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:60]
    assert b"\r\nConnection: close\r\n" in reply
    assert received == []


def test_a_body_is_bytes_however_its_pieces_came() -> None:
    """h11 gives chunk data as bytearrays: one piece, or many, the body is bytes."""
    for pieces in ([bytearray(b"ab")], [bytearray(b"ab"), b"cd"], [b"ab"]):
        body = RequestBody(1000, True)
        assert all(body.add(piece) for piece in pieces)  # type: ignore[arg-type]
        joined = body.join()
        assert type(joined) is bytes and joined == b"".join(pieces)
