"""ChunkedPassthrough: a chunked body validated and forwarded still framed, split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http1.chunks import SIZE, FramingError
from relay.http1.passthrough import ChunkedPassthrough
from relay.http1.readers import ChunkedReader

size_line_styles = st.sampled_from(["plain", "upper", "zeros", "ext"])


def encode_styled(pieces: list[bytes], styles: list[str], trailers: bytes) -> bytes:
    out = []
    for piece, style in zip(pieces, styles, strict=False):
        size = {"plain": b"%x" % len(piece), "upper": b"%X" % len(piece),
                "zeros": b"00%x" % len(piece), "ext": b"%x;a=b" % len(piece)}[style]
        out.append(size + b"\r\n" + piece + b"\r\n")
    return b"".join(out) + b"0\r\n" + trailers + b"\r\n"


def at_chunk_boundary(framed: bytes) -> bytes:
    """Decode framed bytes that must hold whole chunks only; return their payload."""
    d = ChunkedReader()
    payload = b"".join(d.feed(framed))
    assert d._state == SIZE and not d._partial and not d.done, "output stopped inside a chunk"
    return payload


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.binary(min_size=1, max_size=200), max_size=10),
       styles=st.lists(size_line_styles, min_size=10, max_size=10),
       trailers=st.sampled_from([b"", b"x-t: 1\r\n"]),
       cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12))
def test_passthrough_any_split_keeps_payload_and_chunk_boundaries(
        pieces: list[bytes], styles: list[str], trailers: bytes, cuts: list[int]) -> None:
    data = encode_styled(pieces, styles, trailers)
    p = ChunkedPassthrough()
    framed = b""
    prev = 0
    payload = b"".join(pieces)
    for cut in [*sorted({c for c in cuts if c <= len(data)}), len(data)]:
        framed += b"".join(p.feed(data[prev:cut]))
        prev = cut
        got = at_chunk_boundary(framed)  # every write ends between chunks
        assert payload.startswith(got)
        if len(got) >= 4:
            assert p.tail == got[-4:]
    assert p.done and p.trailing == b""
    assert at_chunk_boundary(framed) == payload


def test_passthrough_whole_plain_chunks_come_back_as_the_read_itself() -> None:
    p = ChunkedPassthrough()
    read = b"5\r\nhello\r\n6\r\n world\r\n"
    out = p.feed(read)
    assert len(out) == 1 and out[0] is read
    assert p.tail == b"orld"


def test_passthrough_drops_the_last_chunk_and_trailers() -> None:
    p = ChunkedPassthrough()
    assert p.feed(b"2\r\nok\r\n0\r\nx-sum: 1\r\n\r\nEXTRA") == [b"2\r\nok\r\n"]
    assert p.done and p.trailing == b"EXTRA"


def test_passthrough_error_keeps_whole_chunks_before_it() -> None:
    p = ChunkedPassthrough()
    with pytest.raises(FramingError) as info:
        p.feed(b"2\r\nok\r\nzz\r\n")
    assert info.value.pieces == [b"2\r\nok\r\n"]
    with pytest.raises(FramingError):
        ChunkedPassthrough().feed(b"3\r\nabcXY")


def test_passthrough_gives_out_a_chunk_without_its_crlf_before_the_error() -> None:
    """As when the read is cut inside it: the data the size line announced goes out (as a
    chunk of its own), then the error; whatever the reads, the client gets the same bytes."""
    with pytest.raises(FramingError) as info:
        ChunkedPassthrough().feed(b"2\r\nok\r\n3\r\nabcXY")
    assert b"".join(info.value.pieces) == b"2\r\nok\r\n3\r\nabc\r\n"
