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

from .chunks import ChunkScanner, Output
from .chunks import FramingError as FramingError  # (re-exported: every reader raises it)
from .messages import Headers

TAIL = 64  # payload bytes kept in ``tail``: enough for the last line of an event stream


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


class ChunkedReader(ChunkScanner):
    """``Transfer-Encoding: chunked`` (RFC 9112 section 7.1), decoded by the chunk scanner
    (:mod:`relay.http1.chunks`): the payload of each chunk as a slice of the read, the last
    :data:`TAIL` of it in ``tail``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(Output.PAYLOAD)

    def feed(self, data: bytes) -> list[bytes]:
        try:
            out = ChunkScanner.feed(self, data)
        except FramingError as exc:
            if exc.pieces:
                self.tail = keep_tail(self.tail, exc.pieces)
            raise
        if out:
            self.tail = keep_tail(self.tail, out)
        return out


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
