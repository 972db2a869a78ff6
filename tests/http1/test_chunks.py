"""The chunk scanner, fed every input at every split: whole, cut at each byte boundary, and one
byte at a time; the three outputs agree with each other and, where it decides the same thing,
with h11."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import h11
import pytest

from relay.http1 import chunks
from relay.http1.chunks import (
    MAX_CHUNK_LINE,
    SIZE,
    BodyTooLarge,
    ChunkScanner,
    FramingError,
    Output,
)

SECRET = b"sk-live-0123456789"
EXTRA = b"GET /next HTTP/1.1\r\n"  # what follows a body: the next message's bytes

REASONS = {chunks.BAD_SIZE, chunks.LONG_LINE, chunks.NO_CRLF, chunks.BIG_TRAILERS,
           chunks.BAD_EXTENSION, chunks.BIG_EXTENSIONS, chunks.TOO_LARGE, chunks.CUT}

# (body, payload): bodies every output accepts, and h11 too, with the same payload.
VALID = [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n4\r\nghij\r\n1\r\nk\r\n0\r\n\r\n", b"abcdefghijk"),
    (b"0\r\n\r\n", b""),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),  # upper-case hex
    (b"00a\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),  # leading zeros
    (b"5;name\r\nhello\r\n0;last=1\r\n\r\n", b"hello"),  # extensions
    (b'5;a=b;c="q \\" s"\r\nhello\r\n0\r\n\r\n', b"hello"),
    (b"5 \r\nhello\r\n0\r\n\r\n", b"hello"),  # whitespace before the CRLF
    (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),  # CRLFs inside the data
    (b"3\r\nabc\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n", b"abc"),  # trailers
    (b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", b"x" * 16),
    (b"5;" + b"n" * 900 + b"\r\nhello\r\n0\r\n\r\n", b"hello"),
]

# (body, reason): bodies every output refuses for the same reason, at every split. The first
# ones h11 refuses too (``H11_REFUSES``); after them, the relay's own caps.
INVALID = [
    (b"zz\r\nabc\r\n", chunks.BAD_SIZE),  # not hex
    (b"0x3\r\nabc\r\n", chunks.BAD_SIZE),  # int(..., 16) would take these three
    (b"+3\r\nabc\r\n", chunks.BAD_SIZE),
    (b"1_0\r\n", chunks.BAD_SIZE),
    (b"\r\n", chunks.BAD_SIZE),  # an empty size
    (b" 5\r\nhello\r\n", chunks.BAD_SIZE),
    (b"5\r\nhelloXY0\r\n\r\n", chunks.NO_CRLF),  # data not followed by CRLF
    (b"5\r\nhello\rX", chunks.NO_CRLF),
    (b"2\r\nok\r\n3\r\nabc\n0\r\n\r\n", chunks.NO_CRLF),
    (b"11111111111111111\r\n", chunks.BAD_SIZE),  # 17 hex digits (h11 takes 20)
    (b"5;" + b"n" * (MAX_CHUNK_LINE + 1) + b"\r\nhello\r\n", chunks.LONG_LINE),
    (b"1" * (MAX_CHUNK_LINE + 2), chunks.LONG_LINE),  # a size line that never ends
    (b"0\r\nx: " + b"v" * MAX_CHUNK_LINE + b"\r\n\r\n", chunks.LONG_LINE),
]
H11_REFUSES = 9  # INVALID[:9]: h11 refuses them as well


def splits(data: bytes) -> Iterator[list[bytes]]:
    """``data`` whole, cut in two at every byte boundary, and one byte at a time."""
    yield [data]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]
    yield [data[i : i + 1] for i in range(len(data))]


@dataclass
class Outcome:
    output: list[bytes]
    error: str | None
    done: bool
    trailing: bytes


def scan(scanner: ChunkScanner, reads: list[bytes]) -> Outcome:
    output: list[bytes] = []
    for data in reads:
        try:
            output += scanner.feed(data)
        except FramingError as exc:
            output += exc.pieces
            return Outcome(output, str(exc), scanner.done, scanner.trailing)
    return Outcome(output, None, scanner.done, scanner.trailing)


def decode(framed: bytes) -> bytes:
    """The payload of framed output, which must hold whole chunks only."""
    scanner = ChunkScanner(Output.PAYLOAD)
    payload = b"".join(scanner.feed(framed))
    assert scanner._state == SIZE and not scanner._partial, "output stopped inside a chunk"
    return payload


def h11_body(body: bytes) -> tuple[bytes, bool]:
    """h11's payload for ``body`` as a chunked response body, and whether it ended there."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body)
    assert isinstance(conn.next_event(), h11.Response)
    payload = b""
    try:
        while isinstance(event := conn.next_event(), h11.Data):
            payload += event.data
    except h11.RemoteProtocolError:
        return payload, False
    return payload, isinstance(event, h11.EndOfMessage)


@pytest.mark.parametrize(("body", "payload"), VALID)
def test_a_valid_body_decodes_the_same_at_every_split(body: bytes, payload: bytes) -> None:
    assert h11_body(body) == (payload, True)
    for reads in splits(body + EXTRA):
        got = scan(ChunkScanner(Output.PAYLOAD), reads)
        assert (b"".join(got.output), got.error, got.done) == (payload, None, True), reads
        assert got.trailing == EXTRA
        checked = scan(ChunkScanner(Output.NOTHING, limit=len(payload), max_extensions=1024),
                       reads)
        assert (checked.output, checked.error, checked.done) == ([], None, True)
        assert checked.trailing == b""  # (a checker never holds the next message's bytes)


@pytest.mark.parametrize(("body", "payload"), VALID)
def test_framed_output_stops_between_chunks_and_keeps_the_tail(body: bytes,
                                                               payload: bytes) -> None:
    for reads in splits(body + EXTRA):
        scanner, framed = ChunkScanner(Output.FRAMED), b""
        for data in reads:
            framed += b"".join(scanner.feed(data))
            so_far = decode(framed)  # after every read, not only at the end
            assert payload.startswith(so_far)
            if len(so_far) >= 4:
                assert scanner.tail == so_far[-4:]
        assert decode(framed) == payload and scanner.done and scanner.trailing == EXTRA


@pytest.mark.parametrize(("body", "reason"), INVALID)
def test_an_invalid_body_is_refused_for_one_fixed_reason_at_every_split(
        body: bytes, reason: str) -> None:
    for reads in splits(body):
        for output in Output:
            got = scan(ChunkScanner(output), reads)
            assert got.error == reason, (output, reads)


@pytest.mark.parametrize(("body", "reason"), INVALID[:H11_REFUSES])
def test_h11_refuses_the_same_bodies(body: bytes, reason: str) -> None:
    assert not h11_body(body)[1]


@pytest.mark.parametrize(("body", "reason"), INVALID)
def test_the_payload_before_an_error_is_the_same_at_every_split(body: bytes,
                                                                reason: str) -> None:
    """What a read decoded before the error still goes out, whatever the reads were."""
    expected = b"".join(scan(ChunkScanner(Output.PAYLOAD), [body]).output)
    for reads in splits(body):
        got = scan(ChunkScanner(Output.PAYLOAD), reads)
        assert b"".join(got.output) == expected
        framed = scan(ChunkScanner(Output.FRAMED), reads)
        assert decode(b"".join(framed.output)) == expected


def test_trailers_are_bounded_at_every_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "MAX_TRAILERS", 40)  # (the real cap takes 1,000 lines)
    fits = b"0\r\n" + b"x-t: 1234567890\r\n" * 2 + b"\r\n"  # 36 bytes of lines and 2
    assert h11_body(fits) == (b"", True)
    for reads in splits(fits):
        assert scan(ChunkScanner(Output.PAYLOAD), reads).done
    over = fits[:-2] + b"x: 1\r\n\r\n"
    for reads in splits(over):
        for output in Output:
            assert scan(ChunkScanner(output), reads).error == chunks.BIG_TRAILERS


def test_an_error_never_quotes_the_peers_bytes() -> None:
    """A chunk line may carry a secret (an extension is free text): errors give a fixed
    reason, with or without an extension policy."""
    bodies = [SECRET + b"\r\n", b"5;" + SECRET + b"\x01\r\nhello\r\n",
              b"5;k=" + SECRET + b" x\r\nhello\r\n", b"5\r\nhello" + SECRET,
              b"5;" + SECRET * 300 + b"\r\n", b"0\r\n" + SECRET * 300]
    for body in bodies:
        errors = []
        for scanner in (ChunkScanner(Output.PAYLOAD), ChunkScanner(Output.FRAMED),
                        ChunkScanner(Output.NOTHING, 10, max_extensions=1024)):
            try:
                scanner.feed(body)
            except FramingError as exc:
                errors.append(str(exc))
        assert errors, body
        assert all(e in REASONS and SECRET.decode() not in e for e in errors), errors


@pytest.mark.parametrize(("body", "reason"), [
    (b"5;na me\r\nhello\r\n", chunks.BAD_EXTENSION),  # not a token
    (b"5;a=\x01\r\nhello\r\n", chunks.BAD_EXTENSION),  # a control character
    (b'5;a="open\r\nhello\r\n', chunks.BAD_EXTENSION),  # an unterminated quoted-string
    (b"5;=b\r\nhello\r\n", chunks.BAD_EXTENSION),
    (b"5;" + b"a" * 101 + b"\r\nhello\r\n", chunks.BIG_EXTENSIONS),
    (b"1;" + b"a" * 60 + b"\r\nx\r\n1;" + b"a" * 60 + b"\r\ny\r\n", chunks.BIG_EXTENSIONS),
    (b"ffffffffffffffff\r\n", chunks.TOO_LARGE),  # refused at once, not waited for
    (b"10\r\n" + b"x" * 16 + b"\r\n11\r\n", chunks.TOO_LARGE),  # the sizes add up past it
])
def test_an_extension_policy_and_a_limit_are_enforced_at_every_split(body: bytes,
                                                                     reason: str) -> None:
    """Where the relay is stricter than h11 (it takes any extension, and any size)."""
    if reason != chunks.TOO_LARGE:
        assert h11_body(body + b"0\r\n\r\n")[1]
    for reads in splits(body):
        got = scan(ChunkScanner(Output.NOTHING, limit=32, max_extensions=100), reads)
        assert got.error == reason, reads
    # Without the policy, extensions are skipped unchecked.
    if reason == chunks.BAD_EXTENSION:
        assert scan(ChunkScanner(Output.PAYLOAD), [body]).error is None


def test_a_size_over_the_limit_is_its_own_error() -> None:
    with pytest.raises(BodyTooLarge):
        ChunkScanner(Output.NOTHING, limit=4).feed(b"5\r\n")
    assert ChunkScanner(Output.NOTHING, limit=5).feed(b"5\r\nhello\r\n") == []


def test_the_end_of_the_body_must_have_come() -> None:
    for body in (b"", b"5\r\nhel", b"5\r\nhello\r\n", b"0\r\n", b"0\r\nx: 1\r\n"):
        scanner = ChunkScanner(Output.PAYLOAD)
        scanner.feed(body)
        with pytest.raises(FramingError, match=chunks.CUT):
            scanner.feed_eof()
    scanner = ChunkScanner(Output.PAYLOAD)
    scanner.feed(b"0\r\n\r\n")
    scanner.feed_eof()


def test_whole_reads_come_back_as_the_read_itself() -> None:
    """Nothing is copied on the usual reads: all payload (decoded), all whole chunks (framed)."""
    decoded = ChunkScanner(Output.PAYLOAD)
    assert decoded.feed(b"5\r\n") == []
    payload = b"abcde"
    assert decoded.feed(payload)[0] is payload
    framed = ChunkScanner(Output.FRAMED)
    read = b"5\r\nhello\r\n1\r\n!\r\n6\r\n world\r\n"
    out = framed.feed(read)
    assert len(out) == 1 and out[0] is read and framed.tail == b"orld"


def test_framed_output_reframes_what_is_not_plainly_framed() -> None:
    framed = ChunkScanner(Output.FRAMED)
    out = framed.feed(b"2\r\nok\r\n5;secret=1\r\nhello\r\n3\r\nabc\r\n0\r\nx: 1\r\n\r\n")
    assert b"".join(out) == b"2\r\nok\r\n5\r\nhello\r\n3\r\nabc\r\n"
    assert framed.done and framed.tail == b"oabc"


def test_whole_chunks_after_a_split_one_go_out_as_a_run() -> None:
    framed = ChunkScanner(Output.FRAMED)
    assert framed.feed(b"5\r\nhel") == [b"3\r\n", b"hel", b"\r\n"]
    rest = b"lo\r\n3\r\nabc\r\n4\r\ndefg\r\n"
    assert framed.feed(rest) == [b"2\r\n", b"lo", b"\r\n", rest[4:]]
    assert framed.tail == b"defg" and not framed.done
