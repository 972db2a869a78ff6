"""Upstream response bodies, sans-IO: one reader per framing (RFC 9112 section 6.3).

h11 parses the response head; the body bytes go through one of these readers instead of h11's,
because h11 spends several microseconds of Python per chunk and an event stream is mostly small
chunks:

* :class:`LengthReader`: ``Content-Length: N``: exactly N bytes;
* :class:`ChunkedReader`: ``Transfer-Encoding: chunked``: ``<hex size>[;ext]\\r\\n<data>\\r\\n``
  repeated, ended by a ``0`` chunk, optional trailer lines, and a blank line;
* :class:`CloseReader`: neither header: the body runs until the server closes.

Each reader is fed the bytes of one socket read and returns the payload pieces in them, as
slices of its input, never joined: the relay writes each piece to the client at once. ``done``
turns true at the end of the body; ``trailing`` then holds any bytes read past it (a connection
with trailing bytes is never reused). ``tail`` holds the last payload bytes (up to
:data:`TAIL`), from which the relay tells whether an event stream stands between two events.
"""

from __future__ import annotations

from typing import Protocol

from .messages import Headers

MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) or one trailer line
MAX_TRAILERS = 16 * 1024
TAIL = 64  # payload bytes kept in ``tail``: enough for the last line of an event stream


class FramingError(Exception):
    """The body bytes break their framing (bad chunk size, missing CRLF, early EOF).

    ``pieces`` holds the payload decoded from the same read before the error: it is valid and
    must still reach the client, ahead of the error report.
    """

    def __init__(self, message: str, pieces: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.pieces = pieces or []


class BodyReader(Protocol):
    done: bool
    trailing: bytes
    tail: bytes

    def feed(self, data: bytes) -> list[bytes]: ...

    def feed_eof(self) -> None:
        """The peer closed: fine for close-delimited bodies, a FramingError otherwise."""


def keep_tail(tail: bytes, pieces: list[bytes]) -> bytes:
    """The last :data:`TAIL` payload bytes after ``pieces`` (non-empty) followed ``tail``."""
    last = pieces[-1]
    if len(last) >= TAIL:
        return last[-TAIL:]
    return (tail + b"".join(pieces))[-TAIL:]  # a short last piece: rare, small


class LengthReader:
    """A body of exactly ``length`` bytes."""

    __slots__ = ("done", "remaining", "tail", "trailing")

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0
        self.trailing = self.tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.trailing += data
            return []
        n = len(data)
        if n < self.remaining:
            self.remaining -= n
            piece = data
        else:
            piece, self.trailing = data[: self.remaining], data[self.remaining :]
            self.remaining = 0
            self.done = True
            if not piece:
                return []
        self.tail = keep_tail(self.tail, [piece])
        return [piece]

    def feed_eof(self) -> None:
        if not self.done:
            raise FramingError(f"connection closed with {self.remaining} body bytes missing")


class CloseReader:
    """A body delimited by the connection closing (HTTP/1.0 style); never reusable."""

    __slots__ = ("done", "tail", "trailing")

    def __init__(self) -> None:
        self.done = False
        self.trailing = self.tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        self.tail = keep_tail(self.tail, [data])
        return [data]

    def feed_eof(self) -> None:
        self.done = True


# Chunk scanner states; plain ints because the state is tested once per chunk.
SIZE, DATA, DATA_CRLF, TRAILER, DONE = range(5)


class ChunkScanner:
    """What both chunked readers share: partial lines, chunk ends, trailers, the end."""

    __slots__ = ("_partial", "_remaining", "_state", "_trailer_bytes", "done", "tail", "trailing")

    def __init__(self) -> None:
        self._state = SIZE
        self._remaining = 0
        self._partial = b""
        self._trailer_bytes = 0
        self.done = False
        self.trailing = self.tail = b""

    def _keep(self, data: bytes, pos: int) -> None:
        rest = data[pos:]
        if len(rest) > MAX_CHUNK_LINE:
            raise FramingError("chunk size line too long")
        self._partial = rest

    def _trailer_line(self, data: bytes, pos: int) -> int:
        """Consume one trailer line (dropped: the relay never forwards trailers); -1 if partial."""
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            self._keep(data, pos)
            return -1
        self._trailer_bytes += eol - pos + 2
        if self._trailer_bytes > MAX_TRAILERS:
            raise FramingError("chunked trailers too large")
        if eol == pos:
            self._state = DONE
            self.done = True
        return eol + 2

    def _data_crlf(self, data: bytes, pos: int, end: int) -> int:
        """Consume the CRLF that ends a chunk's data; -1 if only its CR has arrived yet."""
        if end - pos < 2:
            if data[pos:] != b"\r":
                raise FramingError("chunk data not followed by CRLF")
            self._partial = b"\r"
            return -1
        if data[pos : pos + 2] != b"\r\n":
            raise FramingError("chunk data not followed by CRLF")
        self._state = SIZE
        return pos + 2

    def _size_line(self, data: bytes, pos: int) -> int:
        """Consume a chunk-size line: -1 if partial (kept), else where the chunk data starts."""
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            self._keep(data, pos)
            return -1
        size = parse_chunk_size(data[pos:eol])
        if size:
            self._remaining, self._state = size, DATA
        else:
            self._state = TRAILER
        return eol + 2

    def feed_eof(self) -> None:
        if not self.done:
            raise FramingError("connection closed inside a chunked body")


class ChunkedReader(ChunkScanner):
    """Incremental ``Transfer-Encoding: chunked`` decoder (RFC 9112 section 7.1).

    The common case, a read holding whole chunks, costs one ``find`` and one ``int()`` per chunk
    and a slice per payload; partial lines are kept in ``_partial`` until the rest arrives.
    Line ends must be CRLF, as h11 requires, so an ambiguous body is a FramingError, not a guess.
    """

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        out: list[bytes] = []
        try:
            self._decode(data, out)
        except FramingError as exc:
            exc.pieces = out
            raise
        finally:
            if out:
                self.tail = keep_tail(self.tail, out)
        return out

    def _decode(self, data: bytes, out: list[bytes]) -> None:
        pos, end = 0, len(data)
        while pos < end and pos >= 0:
            state = self._state
            if state == DATA:
                take = min(self._remaining, end - pos)
                out.append(data[pos : pos + take] if take != end else data)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = DATA_CRLF
            elif state == SIZE:
                pos = self._size_line(data, pos)
            elif state == DATA_CRLF:
                pos = self._data_crlf(data, pos, end)
            elif state == TRAILER:
                pos = self._trailer_line(data, pos)
            else:
                self.trailing += data[pos:]
                return


def parse_chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (extensions ignored), strictly: hex digits only."""
    size = line.split(b";", 1)[0].rstrip(b" \t")
    # int(x, 16) alone would accept "0x1f", "+1f", "1_f" and surrounding spaces.
    if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
        raise FramingError("invalid chunk size line")  # (the peer's bytes are never quoted)
    return int(size, 16)


def has_body(method: bytes, status: int) -> bool:
    """Whether a response to ``method`` with ``status`` can carry a body (RFC 9112 6.3)."""
    return method != b"HEAD" and status not in (204, 304) and status >= 200


def response_reader(request_method: bytes, status: int, headers: Headers) -> (
    LengthReader | ChunkedReader | CloseReader
):
    """Pick the reader for a response body, from a head h11 validated.

    h11 has already rejected heads with a Transfer-Encoding other than chunked or a malformed
    Content-Length, so only the three plain cases remain.
    """
    if not has_body(request_method, status):
        return LengthReader(0)
    length = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return ChunkedReader()
        if name == b"content-length":
            length = int(value)
    return CloseReader() if length is None else LengthReader(length)


def declared_length(request_method: bytes, status: int, headers: Headers,
                    reader: BodyReader) -> int | None:
    """The ``Content-Length`` the client is told: a length-framed body's own, and for a HEAD
    request or a 304 the length the upstream declared for the body it did not send (RFC 9110
    9.3.2, 15.4.5); None otherwise (chunked, close-delimited, 204, 1xx)."""
    if isinstance(reader, LengthReader) and has_body(request_method, status):
        return reader.remaining
    if request_method == b"HEAD" or status == 304:
        for name, value in headers:
            if name == b"content-length":
                return int(value)
    return None
