"""Body decoders, fed whole and split at every position (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.framing import (
    ChunkedDecoder,
    ChunkedPassthrough,
    CloseDecoder,
    FramingError,
    LengthDecoder,
    chunk,
    response_decoder,
)


def encode_chunked(pieces: list[bytes], ext: bytes = b"", trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces if p)
    return body + b"0\r\n" + trailers + b"\r\n"


def feed_split(decoder: ChunkedDecoder | LengthDecoder, data: bytes, cuts: list[int]) -> bytes:
    out = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(decoder.feed(data[prev:cut]))
        prev = cut
    return b"".join(out)


def test_chunked_whole() -> None:
    d = ChunkedDecoder()
    data = encode_chunked([b"hello ", b"world"]) + b"EXTRA"
    assert d.feed(data) == [b"hello ", b"world"]
    assert d.done and d.trailing == b"EXTRA"


def test_chunked_piece_is_not_copied_when_read_is_exactly_the_payload() -> None:
    d = ChunkedDecoder()
    assert d.feed(b"5\r\n") == []
    payload = b"abcde"
    assert d.feed(payload)[0] is payload


def test_chunked_extensions_and_trailers_are_dropped() -> None:
    d = ChunkedDecoder()
    data = encode_chunked([b"abc"], ext=b';name="v"', trailers=b"x-sum: 1\r\nx-b: 2\r\n")
    assert d.feed(data) == [b"abc"]
    assert d.done and d.trailing == b""


@pytest.mark.parametrize("bad", [
    b"zz\r\nabc\r\n",            # not hex
    b"0x3\r\nabc\r\n",           # int(..., 16) would accept this
    b"+3\r\nabc\r\n",
    b"3\r\nabcXY",               # data not followed by CRLF
    b"1_0\r\n",
    b"\r\n",                     # empty size
    b"11111111111111111\r\n",    # 17 hex digits
])
def test_chunked_rejects_bad_framing(bad: bytes) -> None:
    with pytest.raises(FramingError):
        ChunkedDecoder().feed(bad)


def test_chunked_size_line_without_end_is_bounded() -> None:
    d = ChunkedDecoder()
    with pytest.raises(FramingError):
        for _ in range(100):
            d.feed(b"a" * 100)


def test_chunked_eof_inside_body_is_an_error() -> None:
    d = ChunkedDecoder()
    d.feed(b"5\r\nab")
    with pytest.raises(FramingError):
        d.feed_eof()


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_chunked_any_split_gives_the_same_bytes(pieces: list[bytes], cuts: list[int]) -> None:
    data = encode_chunked(pieces, trailers=b"t: 1\r\n")
    d = ChunkedDecoder()
    assert feed_split(d, data, [c for c in cuts if c <= len(data)]) == b"".join(pieces)
    assert d.done and d.trailing == b""


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2000), extra=st.binary(max_size=50),
       cuts=st.lists(st.integers(min_value=0, max_value=2100), max_size=10))
def test_length_any_split(body: bytes, extra: bytes, cuts: list[int]) -> None:
    d = LengthDecoder(len(body))
    data = body + extra
    assert feed_split(d, data, [c for c in cuts if c <= len(data)]) == body
    assert d.done and d.trailing == extra


def test_length_eof_early_is_an_error() -> None:
    d = LengthDecoder(10)
    d.feed(b"12345")
    with pytest.raises(FramingError):
        d.feed_eof()


def test_close_decoder_ends_at_eof() -> None:
    d = CloseDecoder()
    assert d.feed(b"abc") == [b"abc"]
    assert not d.done
    d.feed_eof()
    assert d.done


def test_response_decoder_choice() -> None:
    te = [(b"transfer-encoding", b"chunked")]
    cl = [(b"content-length", b"12")]
    assert isinstance(response_decoder(b"GET", 200, te), ChunkedDecoder)
    assert isinstance(response_decoder(b"GET", 200, cl), LengthDecoder)
    assert isinstance(response_decoder(b"GET", 200, []), CloseDecoder)
    for method, status in ((b"HEAD", 200), (b"GET", 204), (b"GET", 304)):
        d = response_decoder(method, status, cl)
        assert isinstance(d, LengthDecoder) and d.done


def test_chunk_framing() -> None:
    payload = b"x" * 300
    size, data, crlf = chunk(payload)
    assert size == b"12c\r\n" and data is payload and crlf == b"\r\n"


def test_pieces_before_a_framing_error_are_kept() -> None:
    d = ChunkedDecoder()
    with pytest.raises(FramingError) as info:
        d.feed(b"2\r\nok\r\nzz\r\n")
    assert info.value.pieces == [b"ok"]


# -- ChunkedPassthrough ----------------------------------------------------------------------

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
    d = ChunkedDecoder()
    payload = b"".join(d.feed(framed))
    assert d._state == 0 and not d._partial and not d.done, "output stopped inside a chunk"
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
