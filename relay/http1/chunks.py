"""The chunked transfer coding (RFC 9112 section 7.1), sans-IO: one scanner for every chunked body.

A chunked body is a run of chunks, each a size line and that many bytes of data::

    1a;name=value\\r\\n          size in hex, optional extensions, CRLF
    <26 bytes of data>\\r\\n     the data, then CRLF
    ...
    0\\r\\n                      the last chunk: size 0, no data
    x-checksum: 1\\r\\n          optional trailer lines
    \\r\\n                       a blank line: the body ends here

The relay reads three kinds of chunked body, all with :class:`ChunkScanner`: an upstream
response decoded to its payload (:class:`~relay.http1.readers.ChunkedReader`), an upstream
response forwarded still framed (:class:`~relay.http1.passthrough.ChunkedPassthrough`), and a
client's request body, checked but decoded by h11
(:class:`~relay.http1.request_body.ChunkedRequestCheck`). They differ only in what the scanner
gives back (its :class:`Output`) and in the scanner's caps; the framing rules are the same, so
they are written once, here.
"""

from __future__ import annotations

import enum
import re

from .writers import chunk

MAX_CHUNK_LINE = 4096  # bytes in a chunk-size line (with extensions) or in one trailer line
MAX_TRAILERS = 16 * 1024  # bytes of trailer lines in one body
MAX_SIZE_DIGITS = 16  # hex digits of a chunk size: up to 2^64-1 (h11 takes 20)

# The reasons a FramingError gives. Fixed strings: a chunk line may carry a secret (an
# extension is free text), so an error never quotes the peer's bytes.
BAD_SIZE = "invalid chunk size line"
LONG_LINE = "chunk size line too long"
NO_CRLF = "chunk data not followed by CRLF"
BIG_TRAILERS = "chunked trailers too large"
BAD_EXTENSION = "invalid chunk extension"
BIG_EXTENSIONS = "chunk extensions too large"
TOO_LARGE = "chunk sizes add up past the body limit"
CUT = "connection closed inside a chunked body"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] ), from the first ";" on.
_EXTENSIONS = re.compile(rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
                         + rb"|" + _QUOTED + rb"))?)*[ \t]*")


class FramingError(Exception):
    """The body bytes break their framing (bad chunk size, missing CRLF, early EOF).

    The message is one of this module's fixed reasons (or a reader's own, never the peer's
    bytes). ``pieces`` holds the output of the same ``feed`` before the error: it is valid and
    must still reach the client, ahead of the error report.
    """

    def __init__(self, message: str, pieces: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.pieces = pieces or []


class BodyTooLarge(FramingError):
    """The declared chunk sizes add up past the scanner's ``limit`` (told before the data
    comes: a size line of ``ffffffffffffffff`` is refused at once, not waited for)."""


class Output(enum.Enum):
    """What :meth:`ChunkScanner.feed` returns."""

    PAYLOAD = "payload"  # the chunks' data, as slices of the input
    FRAMED = "framed"  # the chunks still framed, fit to forward to a chunked client
    NOTHING = "nothing"  # nothing: the body is only checked (and its sizes counted)


# Scanner states; plain ints because the state is tested once per step of the loop.
SIZE, DATA, DATA_CRLF, TRAILER, DONE = range(5)


def parse_chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (extensions ignored), strictly: hex digits only."""
    size = line.split(b";", 1)[0].rstrip(b" \t")
    # int(x, 16) alone would accept "0x1f", "+1f", "1_f" and surrounding spaces.
    if not size or len(size) > MAX_SIZE_DIGITS or size.strip(b"0123456789abcdefABCDEF"):
        raise FramingError(BAD_SIZE)
    return int(size, 16)


class ChunkScanner:
    """Walks a chunked body, fed the bytes of each read as they come.

    ``feed(data)`` returns the output found in ``data`` (see :class:`Output`): with
    ``PAYLOAD``, each chunk's data as a slice of ``data`` (``data`` itself when it is all
    data); with ``FRAMED``, runs of whole chunks as one slice each (``data`` itself when it
    is all whole chunks), and a chunk split across reads as a chunk of its own per read, so
    the output always stops between chunks; with ``NOTHING``, an empty list. ``done`` turns
    true after the last chunk and its trailers; bytes past the end go to ``trailing``.
    ``feed_eof`` raises unless the body is done. Broken framing raises :class:`FramingError`.

    The scanner is a state machine: ``SIZE`` (at a chunk-size line), ``DATA`` (inside a
    chunk's data, ``_remaining`` bytes to go), ``DATA_CRLF`` (the CRLF after it), ``TRAILER``
    (after the last chunk, until the blank line), ``DONE``. ``feed`` takes one step at a time
    until the read is used up. A line cut by the end of a read is kept (``_partial``, at most
    :data:`MAX_CHUNK_LINE` bytes) and put before the next read. Line ends must be CRLF, as h11
    requires, so an ambiguous body is an error, not a guess.

    The usual read holds whole chunks with plain size lines (hex digits, no leading zero, no
    extension): ``_whole_chunks`` takes those in a tight loop (one ``find`` and one ``int()``
    per chunk, nothing copied when framed). Anything else (a split chunk, the last chunk, an
    extension, an odd line) takes one step of the strict path, which also enforces the caps:
    ``limit`` on the sum of the sizes (:class:`BodyTooLarge`) and, when ``max_extensions`` is
    set, the grammar of extensions and their total bytes; without it they are skipped (the
    relay never forwards them: a framed output re-frames a chunk that had any). The last
    chunk and the trailers are consumed, never given out.

    ``tail`` (``FRAMED`` only) holds the last 4 payload bytes given out, for the relay's check
    of whether an event stream stands between two events.
    """

    __slots__ = ("_decode", "_ext_bytes", "_framed", "_limit", "_max_ext", "_partial",
                 "_remaining", "_small", "_state", "_total", "_trailer_bytes", "done", "tail",
                 "trailing")

    def __init__(self, output: Output = Output.PAYLOAD, limit: int | None = None,
                 max_extensions: int | None = None) -> None:
        self._decode = output is Output.PAYLOAD  # (plain flags: an enum is slow to compare)
        self._framed = output is Output.FRAMED
        # Whole chunks under ``_small`` bytes take a branch of their own in _whole_chunks:
        # every chunk when decoding (to be given out) or checking (to be counted); when
        # framed, only those too short to hold the tail alone (the rest go out as one run).
        self._small = 4 if self._framed else 1 << 64
        self._limit = limit
        self._max_ext = max_extensions
        self._state = SIZE
        self._remaining = self._total = self._ext_bytes = self._trailer_bytes = 0
        self._partial = b""
        self.done = False
        self.trailing = self.tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        out: list[bytes] = []
        try:
            pos = 0
            if self._state == SIZE:  # the usual read, whole chunks only, in one step
                pos = self._whole_chunks(data, 0, len(data), out)
                if pos == len(data):
                    return out
                pos = self._size_line(data, pos)
            self._steps(data, pos, out)
        except FramingError as exc:
            exc.pieces = out
            raise
        return out

    def feed_eof(self) -> None:
        if not self.done:
            raise FramingError(CUT)

    def _steps(self, data: bytes, pos: int, out: list[bytes]) -> None:
        """The loop: one step of the state machine at a time until the read is used up."""
        end = len(data)
        while 0 <= pos < end:  # (-1: the rest of the read is a partial line, kept)
            state = self._state
            if state == SIZE:
                pos = self._whole_chunks(data, pos, end, out)
                if pos < end:
                    pos = self._size_line(data, pos)
            elif state == DATA:
                pos = self._data(data, pos, end, out)
            elif state == DATA_CRLF:
                pos = self._data_crlf(data, pos, end)
            elif state == TRAILER:
                pos = self._trailer_line(data, pos)
            else:
                if self._decode or self._framed:  # (a checker never holds them)
                    self.trailing += data[pos:]
                break

    # -- SIZE --------------------------------------------------------------------------------

    def _whole_chunks(self, data: bytes, pos: int, end: int, out: list[bytes]) -> int:
        """Take consecutive whole chunks with plain size lines; where they stop.

        ``isalnum`` and "no leading 0" make ``int(line, 16)`` strict: they exclude signs,
        spaces, underscores and a ``0x`` prefix, which int() would accept, and the last chunk.
        A missing CRLF stops the run, for the strict path to report.
        """
        find, startswith = data.find, data.startswith
        small = self._small
        start, short_end = pos, -1  # (short_end: the end of the last short chunk taken)
        while pos < end:
            eol = find(b"\r\n", pos)
            if eol < 0 or eol - pos > 16:  # (16: MAX_SIZE_DIGITS)
                break
            line = data[pos:eol]
            if not line.isalnum() or line[0] == 48:
                break
            try:
                size = int(line, 16)
            except ValueError:
                break
            stop = eol + 2 + size
            if stop + 2 > end or not startswith(b"\r\n", stop):
                break
            if size < small:
                if self._decode:
                    out.append(data[eol + 2 : stop])
                elif self._framed:
                    self._short_tail(data, start, pos, short_end, eol + 2, stop)
                    short_end = stop + 2
                else:
                    self._count(size)
            pos = stop + 2
        if self._framed and pos > start:
            out.append(data if pos - start == end else data[start:pos])
            if pos != short_end:  # (its last chunk's payload has 4 bytes or more)
                self.tail = data[pos - 6 : pos - 2]
        return pos

    def _short_tail(self, data: bytes, start: int, pos: int, short_end: int, begin: int,
                    stop: int) -> None:
        """``tail`` after the short payload ``data[begin:stop]`` of the chunk at ``pos``, in
        a run from ``start`` (the chunk before it was short too if it ended at
        ``short_end``)."""
        if start < pos != short_end:  # the chunk before, in this run, had 4 bytes or more
            self.tail = data[pos - 6 : pos - 2]
        self.tail = (self.tail + data[begin:stop])[-4:]

    def _count(self, size: int) -> None:
        """Add a chunk's size to the total its ``limit`` bounds."""
        if self._limit is not None:
            self._total += size
            if self._total > self._limit:
                raise BodyTooLarge(TOO_LARGE)

    def _size_line(self, data: bytes, pos: int) -> int:
        """Consume a chunk-size line the strict way: -1 if partial (kept), else where the
        chunk's data starts."""
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            self._keep(data, pos)
            return -1
        if eol - pos > MAX_CHUNK_LINE:
            raise FramingError(LONG_LINE)
        line = data[pos:eol]
        if self._max_ext is not None and b";" in line:
            self._check_extensions(line, eol - pos, self._max_ext)
        size = parse_chunk_size(line)
        self._count(size)
        if size:
            self._remaining, self._state = size, DATA
        else:
            self._state = TRAILER
        return eol + 2

    def _check_extensions(self, line: bytes, length: int, cap: int) -> None:
        """Extensions (from the first ";") must follow their grammar and, with the earlier
        ones, stay within ``cap`` bytes."""
        semi = line.find(b";")
        self._ext_bytes += length - semi
        if self._ext_bytes > cap:
            raise FramingError(BIG_EXTENSIONS)
        if _EXTENSIONS.fullmatch(line, semi) is None:
            raise FramingError(BAD_EXTENSION)

    def _keep(self, data: bytes, pos: int) -> None:
        """Keep a line cut by the end of the read, bounded (a CR may wait for its LF)."""
        rest = data[pos:]
        if len(rest) - rest.endswith(b"\r") > MAX_CHUNK_LINE:
            raise FramingError(LONG_LINE)
        self._partial = rest

    # -- DATA, DATA_CRLF, TRAILER --------------------------------------------------------------

    def _data(self, data: bytes, pos: int, end: int, out: list[bytes]) -> int:
        """Chunk data the strict step entered, or the part of a chunk split across reads."""
        take = min(self._remaining, end - pos)
        stop = pos + take
        if self._decode:
            out.append(data if take == end else data[pos:stop])
        elif self._framed:
            piece = data[pos:stop]
            out += chunk(piece)  # (its own chunk: the output stops between chunks)
            self.tail = piece[-4:] if take >= 4 else (self.tail + piece)[-4:]
        self._remaining -= take
        if not self._remaining:
            self._state = DATA_CRLF
        return stop

    def _data_crlf(self, data: bytes, pos: int, end: int) -> int:
        """Consume the CRLF that ends a chunk's data; -1 if only its CR has arrived yet."""
        if end - pos < 2:
            if data[pos:] != b"\r":
                raise FramingError(NO_CRLF)
            self._partial = b"\r"
            return -1
        if data[pos : pos + 2] != b"\r\n":
            raise FramingError(NO_CRLF)
        self._state = SIZE
        return pos + 2

    def _trailer_line(self, data: bytes, pos: int) -> int:
        """Consume one trailer line (dropped: the relay never forwards trailers); -1 if
        partial. The blank line ends the body."""
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            self._keep(data, pos)
            return -1
        if eol - pos > MAX_CHUNK_LINE:
            raise FramingError(LONG_LINE)
        self._trailer_bytes += eol - pos + 2
        if self._trailer_bytes > MAX_TRAILERS:
            raise FramingError(BIG_TRAILERS)
        if eol == pos:
            self._state = DONE
            self.done = True
        return eol + 2
