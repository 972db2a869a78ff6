"""A request body as the relay reads it: whole, bounded, and, when chunked, strictly framed.

h11 decodes a chunked request body, but leniently for a proxy: it takes chunk sizes of up to 20
hex digits (2^64-1 makes it wait for 16 EiB) and any chunk extension. So the relay also walks
the raw body bytes itself, beside h11, with the rules of RFC 9112 section 7.1 and caps of its
own: a size line is hex digits only, at most 16 of them, and the sizes may not add up past the
body limit (413 at once, not after reading); an extension is ``;name`` or ``;name=value`` with
a token or quoted-string value, no control characters, and at most :data:`MAX_EXTENSIONS`
bytes in all (400). The relay forwards bodies with a ``Content-Length``, so extensions and
trailers are checked and then dropped, never passed on.
"""

from __future__ import annotations

from .chunks import BodyTooLarge, ChunkScanner, FramingError, Output
from .request_head import Rejection

MAX_EXTENSIONS = 1024  # bytes of chunk extensions in one request body


class ChunkedRequestCheck:
    """Walks a chunked request body's framing, raw bytes in, a verdict out (see the module
    docstring): the chunk scanner (:mod:`relay.http1.chunks`) with no output, a ``limit`` on
    the sizes and the extension rules; the bytes themselves are h11's to decode."""

    __slots__ = ("_scanner",)

    def __init__(self, limit: int) -> None:
        self._scanner = ChunkScanner(Output.NOTHING, limit, MAX_EXTENSIONS)

    def feed(self, data: bytes) -> Rejection | None:
        try:
            self._scanner.feed(data)
        except BodyTooLarge:
            return Rejection(413, "request body too large")
        except FramingError as exc:
            return Rejection(400, f"invalid chunked request body: {exc}")
        return None


class RequestBody:
    """The pieces of one request body, collected up to ``limit`` bytes.

    A chunked body is decoded by h11 (``add``, beside ``check``). A ``Content-Length`` body
    (or none) is taken from the raw bytes after its head (``take``): h11 has said all there is
    to say once it parsed the head, and counting bytes here spares its body events."""

    __slots__ = ("_buf", "_first", "_left", "_limit", "check", "deadline", "size")

    def __init__(self, limit: int, chunked: bool, length: int = 0) -> None:
        self._limit = limit
        # One piece is kept as it came; from a second on, all go into one buffer: a list of
        # pieces would cost a bytes object per piece, ~56 bytes for a 1-byte chunk, so what
        # the budget counts (body bytes) would be a fraction of what is held.
        self._first: bytes | None = None
        self._buf = bytearray()
        self.size = 0
        self._left = length
        self.check = ChunkedRequestCheck(limit) if chunked else None
        self.deadline = 0.0  # when it must be whole (its reader's clock; 0: not started)

    @property
    def left(self) -> int:
        """Bytes of a ``Content-Length`` body still to come."""
        return self._left

    def take(self, data: bytes) -> bytes | None:
        """Raw bytes of a ``Content-Length`` body: None while more is to come, else the bytes
        past its end (a next request's)."""
        left = self._left
        if len(data) < left:
            self._left = left - len(data)
            self.add(data)
            return None
        if left:
            self.add(data if len(data) == left else data[:left])
            self._left = 0
        return data[left:]

    def add(self, data: bytes) -> bool:
        """Keep a decoded piece; False once the body is over its limit."""
        self.size += len(data)
        if self.size > self._limit:
            return False
        if self._first is None and not self._buf:
            self._first = data
        else:
            if self._first is not None:
                self._buf += self._first
                self._first = None
            self._buf += data
        return True

    def join(self) -> bytes:
        # (bytes() of bytes is the same object; h11 gives its pieces as bytearrays)
        body = bytes(self._first) if self._first is not None else bytes(self._buf)
        self._first, self._buf = None, bytearray()
        return body
