"""Numbering the events of a resumable stream, sans-IO: bytes in, numbered events out.

A resumable stream is kept as a list of events, each with an ``id:`` line the relay inserts
(``1``, ``2``, ...), so a client that lost its connection sends the last id it saw
(``Last-Event-ID``) and gets exactly the events after it. The upstream's bytes are otherwise
untouched: the id line goes just before the blank line that ends each event, so it is the last
``id`` field of the event and wins over one the upstream sent (WHATWG HTML, "Server-sent
events": the last ``id`` before the dispatch sets the last event id).

An event ends at a blank line: two line ends in a row, each CRLF, LF or CR. A CR at the end of
what arrived may be the first half of a CRLF, so an event is only taken once the byte after it
is known (or the body ended). A block of comment lines only (``: ping``) dispatches nothing:
it is passed on without a number, as the same bytes.

Cost: this runs only for streams that asked to be resumable; plain streams never come here.
"""

from __future__ import annotations

import re

# Two line ends in a row. Atomic groups: a CRLF is one line end, never a CR and then an LF.
_BLANK = re.compile(rb"(?>\r\n|\n|\r)(?>\r\n|\n|\r)")
_LINE_END = re.compile(rb"\r\n|\n|\r")


class EventNumberer:
    """Cuts an event-stream body into events and numbers them (see the module docstring).

    ``feed(data)`` returns the complete blocks so far as ``(seq, bytes)`` pairs, in order:
    ``seq`` is the event's new number, or 0 for a comment-only block (passed on unnumbered).
    ``seq`` (the attribute) is the last number given.
    """

    __slots__ = ("_rest", "seq")

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self._rest: bytes | bytearray = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The blocks ``data`` completes (with what was held back before it)."""
        if not self._rest:
            return self._cut(data, final=False)
        # Only the new bytes (and the 3 before them, where a blank line may begin) can hold a
        # blank line not seen yet: a long event is not scanned again on every read. What is
        # held back grows in place (a bytearray): a new bytes object per read would copy a
        # long event once per read and leave the allocator with every size it passed through.
        since = len(self._rest) - 3
        held = self._rest if isinstance(self._rest, bytearray) else bytearray(self._rest)
        held += data
        return self._cut(held, final=False, since=since)

    def finish(self) -> list[tuple[int, bytes]]:
        """The body ended: the blocks held back, and a last unnumbered piece for bytes that
        never got their blank line (passed on as they are)."""
        out = self._cut(self._rest, final=True)
        if self._rest:
            out.append((0, bytes(self._rest)))
            self._rest = b""
        return out

    @property
    def held(self) -> int:
        """Bytes held back, waiting for their event's end."""
        return len(self._rest)

    def _cut(self, buf: bytes | bytearray, final: bool, since: int = 0
             ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pos = 0
        for m in _BLANK.finditer(buf, max(since, 0)):  # (one C loop, not a search per event)
            end = m.end()
            if not final and end == len(buf) and buf[-1:] == b"\r":
                break  # a CR last: perhaps a CRLF's first half; wait for the next byte
            out.append(self._number(buf[pos:m.start()], buf[m.start():end]))
            pos = end
        self._rest = buf[pos:] if pos else buf  # (nothing taken: kept as it is, not copied)
        return out

    def _number(self, body: bytes | bytearray, ends: bytes | bytearray) -> tuple[int, bytes]:
        """``body``: the block's lines less the last line end; ``ends``: that line end and the
        blank line. (A join: one copy of the event, and bytes whatever ``body`` was.)"""
        if not _has_field(body):
            return 0, b"".join((body, ends))
        self.seq += 1
        first = ends[:2] if ends.startswith(b"\r\n") else ends[:1]
        return self.seq, b"".join((body, first, b"id: %d" % self.seq, ends))


def _has_field(body: bytes | bytearray) -> bool:
    """Whether a block has a line that is not a comment (so it dispatches, or sets a field)."""
    if body[:1] not in (b":", b""):
        return True  # (the usual case, at once: a first line that is a field)
    return any(line and not line.startswith(b":") for line in _LINE_END.split(body))
