"""HTTP/1.1 message-body framing, sans-IO: decoders for upstream bodies, chunk framing for clients.

h11 parses the heads and owns connection state; once a response head is parsed, the body bytes
go through one of these decoders instead of h11's, because h11 spends several microseconds of
Python per chunk and an SSE stream is mostly small chunks (RFC 9112 section 6.3 says how a
response body is delimited):

* :class:`LengthDecoder` -- ``Content-Length: N``: exactly N bytes;
* :class:`ChunkedDecoder` -- ``Transfer-Encoding: chunked``: ``<hex size>[;ext]\\r\\n<data>\\r\\n``
  repeated, ended by a ``0`` chunk, optional trailer lines, and a blank line;
* :class:`CloseDecoder` -- neither header: the body runs until the server closes.

Each decoder is fed the bytes read from the socket and returns the payload pieces in them, as
slices of its input, never joined: the relay writes each piece to the client at once. ``done``
turns true at the end of the body; ``trailing`` then holds any bytes read past it (which a
well-behaved HTTP/1.1 server never sends, so a connection with trailing bytes is not reused).
"""

from __future__ import annotations

from typing import Protocol

MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) or one trailer line
MAX_TRAILERS = 16 * 1024


class FramingError(Exception):
    """The body bytes break their framing (bad chunk size, missing CRLF, early EOF).

    ``pieces`` holds the payload decoded from the same read before the error: it is valid and
    must still reach the client, ahead of the error report.
    """

    def __init__(self, message: str, pieces: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.pieces = pieces or []


class BodyDecoder(Protocol):
    done: bool
    trailing: bytes

    def feed(self, data: bytes) -> list[bytes]: ...

    def feed_eof(self) -> None:
        """The peer closed: fine for close-delimited bodies, a FramingError otherwise."""


class LengthDecoder:
    """A body of exactly ``length`` bytes."""

    __slots__ = ("done", "remaining", "trailing")

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0
        self.trailing = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.trailing += data
            return []
        n = len(data)
        if n < self.remaining:
            self.remaining -= n
            return [data]
        piece, self.trailing = data[: self.remaining], data[self.remaining :]
        self.remaining = 0
        self.done = True
        return [piece] if piece else []

    def feed_eof(self) -> None:
        if not self.done:
            raise FramingError(f"connection closed with {self.remaining} body bytes missing")


class CloseDecoder:
    """A body delimited by the connection closing (HTTP/1.0 style); never reusable."""

    __slots__ = ("done", "trailing")

    def __init__(self) -> None:
        self.done = False
        self.trailing = b""

    def feed(self, data: bytes) -> list[bytes]:
        return [data] if data else []

    def feed_eof(self) -> None:
        self.done = True


# ChunkedDecoder states; plain ints because the state is tested once per chunk.
_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)


class _Chunked:
    """State shared by the two chunked scanners: partial lines, trailers, the end."""

    __slots__ = ("_partial", "_remaining", "_state", "_trailer_bytes", "done", "trailing")

    def __init__(self) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._partial = b""
        self._trailer_bytes = 0
        self.done = False
        self.trailing = b""

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
            self._state = _DONE
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
        self._state = _SIZE
        return pos + 2

    def feed_eof(self) -> None:
        if not self.done:
            raise FramingError("connection closed inside a chunked body")


class ChunkedDecoder(_Chunked):
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
        return out

    def _decode(self, data: bytes, out: list[bytes]) -> None:
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                out.append(data[pos : pos + take] if take != end else data)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_CRLF
            elif state == _SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._keep(data, pos)
                    break
                size = _parse_size(data[pos:eol])
                pos = eol + 2
                if size:
                    self._remaining, self._state = size, _DATA
                else:
                    self._state = _TRAILER
            elif state == _DATA_CRLF:
                pos = self._data_crlf(data, pos, end)
                if pos < 0:
                    break
            elif state == _TRAILER:
                pos = self._trailer_line(data, pos)
                if pos < 0:
                    break
            else:
                self.trailing += data[pos:]
                break

def _parse_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].rstrip(b" \t")
    # int(x, 16) alone would accept "0x1f", "+1f", "1_f" and surrounding spaces.
    if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
        raise FramingError(f"invalid chunk size line {line[:40]!r}")
    return int(size, 16)


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk's pieces for ``transport.writelines``: size line, payload (not copied), CRLF.

    Callers must never frame an empty payload: a zero-size chunk ends the body.
    """
    return b"%x\r\n" % len(data), data, b"\r\n"


def response_decoder(request_method: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> (
    LengthDecoder | ChunkedDecoder | CloseDecoder
):
    """Pick the decoder for a response body (RFC 9112 section 6.3), from a head h11 validated.

    h11 has already rejected heads with a Transfer-Encoding other than chunked or a malformed
    Content-Length, so only the three plain cases remain.
    """
    if request_method == b"HEAD" or status in (204, 304) or status < 200:
        return LengthDecoder(0)
    length = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return ChunkedDecoder()
        if name == b"content-length":
            length = int(value)
    return CloseDecoder() if length is None else LengthDecoder(length)


class ChunkedPassthrough(_Chunked):
    """A chunked body forwarded *with its own framing* to a chunked (HTTP/1.1) client.

    When both hops are chunked, the upstream's framing already says what the client needs: one
    chunk per upstream write. So instead of decoding payloads and framing them again, this
    scanner walks the chunk headers to validate them and to find the end of the body, and
    ``feed`` returns slices of already-framed bytes to write as they are. A read made of whole
    chunks (the usual case) comes back as one slice, the read itself, not copied.

    Two cases are re-framed instead, so the client's stream always stops at a chunk boundary
    (and a final SSE error event can always be appended): a chunk split across reads (its
    parts go out as chunks of their own) and a size line that is not plain lower-case hex
    (extensions are dropped). The terminal chunk and trailers are consumed, not forwarded: the
    server side writes the last chunk itself. ``tail`` holds the last payload bytes (up to 4),
    for the event-boundary check the relay makes when a stream fails.
    """

    __slots__ = ("tail",)

    def __init__(self) -> None:
        super().__init__()
        self.tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        raw, pos, last = -1, 0, -1
        if self._state == _SIZE:
            raw, pos, last = self._whole_chunks(data, 0, len(data))
            if pos == len(data) and last >= 0:  # the usual read: whole chunks only
                self.tail = data[last - 4 : last]
                return [data]
        out: list[bytes] = []
        try:
            self._scan(data, out, raw, pos, last)
        except FramingError as exc:
            exc.pieces = out
            raise
        return out

    def _scan(self, data: bytes, out: list[bytes], raw: int, pos: int, last: int) -> None:
        """The general loop, from ``pos`` on; ``raw``: start of the run of whole, plainly framed
        chunks being collected (-1: none); ``last``: end of the last payload in that run."""
        end = len(data)
        try:
            while pos < end:
                state = self._state
                if state == _SIZE and raw < 0:
                    raw, pos, last = self._whole_chunks(data, pos, end)
                    if raw >= 0 and pos >= end:
                        break
                if state == _SIZE:
                    eol = data.find(b"\r\n", pos)
                    if eol < 0:
                        self._keep(data, pos)
                        break
                    line = data[pos:eol]
                    try:
                        size = int(line, 16) if 0 < len(line) <= 16 else -1
                    except ValueError:
                        size = -1
                    plain = size > 0 and b"%x" % size == line
                    if not plain:
                        size = _parse_size(line)  # the strict check, and the error if invalid
                    stop = eol + 2 + size
                    if plain and stop + 2 <= end:  # a whole chunk: extend the raw run
                        if data[stop : stop + 2] != b"\r\n":
                            raise FramingError("chunk data not followed by CRLF")
                        if raw < 0:
                            raw = pos
                        if size < 4:
                            self._note_tail(data, last)
                            self.tail = (self.tail + data[eol + 2 : stop])[-4:]
                            last = -1
                        else:
                            last = stop
                        pos = stop + 2
                        continue
                    self._flush(data, out, raw, pos, last)
                    raw = last = -1
                    pos = eol + 2
                    if size == 0:
                        self._state = _TRAILER
                    else:
                        self._remaining, self._state = size, _DATA
                elif state == _DATA:
                    take = min(self._remaining, end - pos)
                    piece = data[pos : pos + take]
                    out += chunk(piece)
                    self.tail = piece[-4:] if take >= 4 else (self.tail + piece)[-4:]
                    pos += take
                    self._remaining -= take
                    if not self._remaining:
                        self._state = _DATA_CRLF
                elif state == _DATA_CRLF:
                    new = self._data_crlf(data, pos, end)
                    if new < 0:
                        break
                    pos = new
                elif state == _TRAILER:
                    pos = self._trailer_line(data, pos)
                    if pos < 0:
                        pos = end
                        break
                else:
                    self.trailing += data[pos:]
                    pos = end
                    break
        except FramingError:
            self._flush(data, out, raw, pos, last)  # whole chunks before the error still go
            raise
        self._flush(data, out, raw, pos, last)

    @staticmethod
    def _whole_chunks(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
        """The fast path: skip consecutive whole chunks with plain sizes of 4 bytes or more.

        Returns (start of the run or -1, where it stopped, end of its last payload or -1).
        Anything else (a partial chunk, an odd size line, the last chunk) stops the run for the
        general loop to handle. ``isalnum`` and "no leading 0" make ``int(line, 16)`` strict:
        they exclude signs, spaces, underscores and a ``0x`` prefix, which int() would accept.
        """
        find, startswith = data.find, data.startswith
        start, last = pos, -1
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0 or eol - pos > 16:
                break
            line = data[pos:eol]
            if not line.isalnum() or line[0] == 48:
                break
            try:
                size = int(line, 16)
            except ValueError:
                break
            stop = eol + 2 + size
            if size < 4 or stop + 2 > end:
                break
            if not startswith(b"\r\n", stop):
                break  # the general loop reports it, after the chunks before it
            last = stop
            pos = stop + 2
            if pos >= end:
                break
        return (start if last >= 0 else -1), pos, last

    def _flush(self, data: bytes, out: list[bytes], raw: int, pos: int, last: int) -> None:
        if raw < 0:
            return
        out.append(data if raw == 0 and pos == len(data) else data[raw:pos])
        self._note_tail(data, last)

    def _note_tail(self, data: bytes, last: int) -> None:
        if last >= 0:
            self.tail = data[last - 4 : last]

