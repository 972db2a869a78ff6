"""A chunked upstream body forwarded *with its own framing* to a chunked client (the hot path).

When both hops are chunked, the upstream's framing already says what the client needs: one
chunk per upstream write. So instead of decoding payloads and framing them again,
:class:`ChunkedPassthrough` walks the chunk headers to validate them and to find the end of the
body, and ``feed`` returns slices of already-framed bytes to write as they are. A read made of
whole chunks (the usual case) comes back as one slice, the read itself, not copied.
"""

from __future__ import annotations

from .readers import DATA, DATA_CRLF, SIZE, TRAILER, ChunkScanner, FramingError, parse_chunk_size
from .writers import chunk


class _Run:
    """Whole, plainly framed chunks of one read, collected to be forwarded as one slice:
    ``data[start:stop]``; ``last`` is the end of the last payload in it whose last 4 bytes are
    not yet in ``tail`` (-1: none)."""

    __slots__ = ("last", "start", "stop")

    def __init__(self, start: int = -1, stop: int = -1, last: int = -1) -> None:
        self.start, self.stop, self.last = start, stop, last


class ChunkedPassthrough(ChunkScanner):
    """Validates a chunked body and returns it still framed (see the module docstring).

    Two cases are re-framed instead, so the client's stream always stops at a chunk boundary
    (and a final SSE error event can always be appended): a chunk split across reads (its
    parts go out as chunks of their own) and a size line that is not plain lower-case hex
    (extensions are dropped). The terminal chunk and trailers are consumed, not forwarded: the
    client side writes the last chunk itself. ``tail`` holds the last 4 payload bytes, for
    the event-boundary check the relay makes when a heartbeat or an error is due.
    """

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        run = None
        pos = 0
        if self._state == SIZE:
            start, pos, last = self._whole_chunks(data, 0, len(data))
            if pos == len(data) and last >= 0:  # the usual read: whole chunks only
                self.tail = data[last - 4 : last]
                return [data]
            if start >= 0:
                run = _Run(start, pos, last)
        out: list[bytes] = []
        try:
            self._scan(data, out, run or _Run(), pos)
        except FramingError as exc:
            exc.pieces = out
            raise
        return out

    def _scan(self, data: bytes, out: list[bytes], run: _Run, pos: int) -> None:
        """The general loop, from ``pos`` on, one state step at a time."""
        end = len(data)
        try:
            while 0 <= pos < end:
                state = self._state
                if state == SIZE:
                    pos = self._chunk_head(data, out, run, pos, end)
                elif state == DATA:
                    pos = self._split_chunk(data, out, pos, end)
                elif state == DATA_CRLF:
                    pos = self._data_crlf(data, pos, end)
                elif state == TRAILER:
                    pos = self._trailer_line(data, pos)
                else:
                    self.trailing += data[pos:]
                    break
        finally:
            self._flush(data, out, run)  # whole chunks before an error still go

    def _chunk_head(self, data: bytes, out: list[bytes], run: _Run, pos: int, end: int) -> int:
        """At a chunk-size line: extend the run with a whole plain chunk, or flush the run and
        go on with a chunk that is split or oddly framed, or with the last chunk."""
        if run.start < 0:
            start, pos, last = self._whole_chunks(data, pos, end)
            if start >= 0:
                run.start, run.stop, run.last = start, pos, last
                if pos >= end:
                    return pos
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            self._keep(data, pos)
            return -1
        line = data[pos:eol]
        size = _plain_size(line)
        plain = size > 0
        if not plain:
            size = parse_chunk_size(line)  # the strict check, and the error if invalid
        stop = eol + 2 + size
        if plain and stop + 2 <= end:
            self._extend(data, run, pos, eol, stop)
            return stop + 2
        self._flush(data, out, run)
        if size == 0:
            self._state = TRAILER
        else:
            self._remaining, self._state = size, DATA
        return eol + 2

    def _extend(self, data: bytes, run: _Run, pos: int, eol: int, stop: int) -> None:
        """Add the whole chunk at ``pos`` (payload ``data[eol + 2:stop]``) to the run."""
        if data[stop : stop + 2] != b"\r\n":
            raise FramingError("chunk data not followed by CRLF")
        if run.start < 0:
            run.start = pos
        if stop - eol - 2 < 4:  # a short payload: the tail needs the bytes before it too
            self._note_tail(data, run.last)
            self.tail = (self.tail + data[eol + 2 : stop])[-4:]
            run.last = -1
        else:
            run.last = stop
        run.stop = stop + 2

    def _split_chunk(self, data: bytes, out: list[bytes], pos: int, end: int) -> int:
        """Part of a chunk split across reads: forwarded as a chunk of its own."""
        take = min(self._remaining, end - pos)
        piece = data[pos : pos + take]
        out += chunk(piece)
        self.tail = piece[-4:] if take >= 4 else (self.tail + piece)[-4:]
        self._remaining -= take
        if not self._remaining:
            self._state = DATA_CRLF
        return pos + take

    def _flush(self, data: bytes, out: list[bytes], run: _Run) -> None:
        if run.start < 0:
            return
        whole = run.start == 0 and run.stop == len(data)
        out.append(data if whole else data[run.start : run.stop])
        self._note_tail(data, run.last)
        run.start = run.last = -1

    def _note_tail(self, data: bytes, last: int) -> None:
        if last >= 0:
            self.tail = data[last - 4 : last]

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
            if size < 4 or stop + 2 > end or not startswith(b"\r\n", stop):
                break  # (a missing CRLF is reported by the general loop, after the run)
            last = stop
            pos = stop + 2
            if pos >= end:
                break
        return (start if last >= 0 else -1), pos, last


def _plain_size(line: bytes) -> int:
    """The size on a plain size line (lower-case hex, no extension, no leading 0), else -1."""
    try:
        size = int(line, 16) if 0 < len(line) <= 16 else -1
    except ValueError:
        return -1
    return size if size > 0 and b"%x" % size == line else -1
