"""Upstream body readers, fed whole and split at every position (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http1.readers import (
    TAIL,
    ChunkedReader,
    CloseReader,
    FramingError,
    LengthReader,
    response_reader,
)


def encode_chunked(pieces: list[bytes], ext: bytes = b"", trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces if p)
    return body + b"0\r\n" + trailers + b"\r\n"


def feed_split(reader: ChunkedReader | LengthReader, data: bytes, cuts: list[int]) -> bytes:
    out = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(reader.feed(data[prev:cut]))
        prev = cut
    return b"".join(out)


def test_chunked_whole() -> None:
    d = ChunkedReader()
    data = encode_chunked([b"hello ", b"world"]) + b"EXTRA"
    assert d.feed(data) == [b"hello ", b"world"]
    assert d.done and d.trailing == b"EXTRA"


def test_chunked_piece_is_not_copied_when_read_is_exactly_the_payload() -> None:
    d = ChunkedReader()
    assert d.feed(b"5\r\n") == []
    payload = b"abcde"
    assert d.feed(payload)[0] is payload


def test_chunked_extensions_and_trailers_are_dropped() -> None:
    d = ChunkedReader()
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
        ChunkedReader().feed(bad)


def test_chunked_size_line_without_end_is_bounded() -> None:
    d = ChunkedReader()
    with pytest.raises(FramingError):
        for _ in range(100):
            d.feed(b"a" * 100)


def test_chunked_eof_inside_body_is_an_error() -> None:
    d = ChunkedReader()
    d.feed(b"5\r\nab")
    with pytest.raises(FramingError):
        d.feed_eof()


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_chunked_any_split_gives_the_same_bytes(pieces: list[bytes], cuts: list[int]) -> None:
    data = encode_chunked(pieces, trailers=b"t: 1\r\n")
    d = ChunkedReader()
    assert feed_split(d, data, [c for c in cuts if c <= len(data)]) == b"".join(pieces)
    assert d.done and d.trailing == b""


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2000), extra=st.binary(max_size=50),
       cuts=st.lists(st.integers(min_value=0, max_value=2100), max_size=10))
def test_length_any_split(body: bytes, extra: bytes, cuts: list[int]) -> None:
    d = LengthReader(len(body))
    data = body + extra
    assert feed_split(d, data, [c for c in cuts if c <= len(data)]) == body
    assert d.done and d.trailing == extra


def test_length_eof_early_is_an_error() -> None:
    d = LengthReader(10)
    d.feed(b"12345")
    with pytest.raises(FramingError):
        d.feed_eof()


def test_close_reader_ends_at_eof() -> None:
    d = CloseReader()
    assert d.feed(b"abc") == [b"abc"]
    assert not d.done
    d.feed_eof()
    assert d.done


def test_response_reader_choice() -> None:
    te = [(b"transfer-encoding", b"chunked")]
    cl = [(b"content-length", b"12")]
    assert isinstance(response_reader(b"GET", 200, te), ChunkedReader)
    assert isinstance(response_reader(b"GET", 200, cl), LengthReader)
    assert isinstance(response_reader(b"GET", 200, []), CloseReader)
    for method, status in ((b"HEAD", 200), (b"GET", 204), (b"GET", 304)):
        d = response_reader(method, status, cl)
        assert isinstance(d, LengthReader) and d.done


def test_pieces_before_a_framing_error_are_kept() -> None:
    d = ChunkedReader()
    with pytest.raises(FramingError) as info:
        d.feed(b"2\r\nok\r\nzz\r\n")
    assert info.value.pieces == [b"ok"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.binary(min_size=1, max_size=150), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=1500), max_size=12),
       kind=st.sampled_from(["chunked", "length", "close"]))
def test_every_reader_keeps_the_last_payload_bytes(pieces: list[bytes], cuts: list[int],
                                                    kind: str) -> None:
    """``tail``: the last TAIL payload bytes, whatever the split (heartbeats and error events
    are placed from it)."""
    payload = b"".join(pieces)
    reader: ChunkedReader | LengthReader | CloseReader
    if kind == "chunked":
        reader, data = ChunkedReader(), encode_chunked(pieces)
    elif kind == "length":
        reader, data = LengthReader(len(payload)), payload
    else:
        reader, data = CloseReader(), payload
    prev = 0
    got = b""
    for cut in [*sorted({c for c in cuts if c <= len(data)}), len(data)]:
        got += b"".join(reader.feed(data[prev:cut]))
        prev = cut
        assert reader.tail == got[-TAIL:]
    assert got == payload


def test_chunked_size_line_too_long_is_refused_whole_as_when_cut() -> None:
    """A whole line over the bound is refused as a line cut by the end of a read is."""
    line = b"5;" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"
    with pytest.raises(FramingError, match="chunk size line too long"):
        ChunkedReader().feed(line)
