"""Server-Sent Events, sans-IO: parser, encoder, and the boundary tracker the relay uses.

The parser follows the WHATWG HTML standard, section "Parsing an event stream" and "Interpreting
an event stream" (9.2.5-9.2.6), rule by rule; the comments quote the rules they implement. No
asyncio, no h11: bytes in, events out.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")

# A lone comment line. Sent only between events it dispatches nothing in any conformant parser;
# ": ping" plus a blank line would make parsers that keep a last event id (openai-python does)
# dispatch an empty event and fail to decode it.
HEARTBEAT = b": heartbeat\n"


@dataclass(frozen=True, slots=True)
class Event:
    """A dispatched event: ``event`` (type, default "message"), ``data``, and ``id`` (the last
    event ID in force when it was dispatched, "" when none was ever set)."""

    data: str
    event: str = "message"
    id: str = ""


class SSEParser:
    """Incremental event-stream parser: ``feed(bytes) -> list[Event]``.

    ``retry`` holds the last valid reconnection time in ms (None until one arrives). Bytes may
    be split anywhere, inside UTF-8 sequences and between the CR and LF of a CRLF.
    """

    __slots__ = ("_bom_done", "_buf", "_data", "_decoder", "_event", "_last_id", "_skip_lf",
                 "retry")

    def __init__(self) -> None:
        # "The stream must then be decoded using the UTF-8 decode algorithm": invalid
        # sequences become U+FFFD, never an error.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._bom_done = False
        self._buf = ""
        self._skip_lf = False  # the previous feed ended in CR: a leading LF completes a CRLF
        self._data = ""  # the data buffer
        self._event = ""  # the event type buffer
        self._last_id = ""  # the last event ID buffer
        self.retry: int | None = None

    def feed(self, data: bytes) -> list[Event]:
        text = self._decoder.decode(data)
        if not text:
            return []
        if not self._bom_done:
            # "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
            self._bom_done = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        buf = self._buf + text if self._buf else text
        events: list[Event] = []
        pos = 0
        for match in _LINE_END.finditer(buf):
            if match.group() == "\r" and match.end() == len(buf):
                self._skip_lf = True  # maybe the first half of a CRLF split across feeds
            self._line(buf[pos : match.start()], events)
            pos = match.end()
        self._buf = buf[pos:]
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        # "If the line is empty (a blank line): Dispatch the event."
        if not line:
            self._dispatch(events)
            return
        # "If the line starts with a U+003A COLON character (:): Ignore the line."
        if line[0] == ":":
            return
        # "If the line contains a U+003A COLON character: Collect the characters on the line
        # before the first colon, and let field be that string. Collect the characters on the
        # line after the first colon, and let value be that string. If value starts with a
        # U+0020 SPACE character, remove it from value."
        # "Otherwise, the string is not empty but does not contain a colon: Process the field
        # using the whole line as the field name, and the empty string as the field value."
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        self._field(field, value)

    def _field(self, field: str, value: str) -> None:
        if field == "event":
            # "Set the event type buffer to field value."
            self._event = value
        elif field == "data":
            # "Append the field value to the data buffer, then append a single U+000A LINE FEED
            # (LF) character to the data buffer."
            self._data += value + "\n"
        elif field == "id":
            # "If the field value does not contain U+0000 NULL, then set the last event ID
            # buffer to the field value. Otherwise, ignore the field."
            if "\0" not in value:
                self._last_id = value
        # "retry": "If the field value consists of only ASCII digits, then interpret the field
        # value as an integer in base ten, and set the event stream's reconnection time to that
        # integer. Otherwise, ignore the field." ("".isdigit() is False.)
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        # "Otherwise: The field is ignored."

    def _dispatch(self, events: list[Event]) -> None:
        # 1. "Set the last event ID string of the event source to the value of the last event ID
        #    buffer. The buffer does not get reset, so the last event ID string of the event
        #    source remains set to this value until the next time it is set by the server."
        # 2. "If the data buffer is an empty string, set the data buffer and the event type
        #    buffer to the empty string and return."
        if not self._data:
            self._event = ""
            return
        # 3. "If the data buffer's last character is a U+000A LINE FEED (LF) character, then
        #    remove the last character from the data buffer."
        data = self._data[:-1] if self._data[-1] == "\n" else self._data
        # 4-5. The event's type is the event type buffer, or "message" when it is empty.
        events.append(Event(data=data, event=self._event or "message", id=self._last_id))
        # 6. "Set the data buffer and the event type buffer to the empty string."
        self._data = self._event = ""

    def close(self) -> list[Event]:
        """End of stream: "If the file ends in the middle of an event, before the final empty
        line, the incomplete event is not dispatched." Nothing is returned, ever."""
        self._buf = self._data = self._event = ""
        return []


def encode_event(data: str, event: str | None = None, id: str | None = None,
                 retry: int | None = None) -> bytes:
    """One event as bytes: ``event:``/``id:``/``retry:`` lines, one ``data:`` line per line of
    ``data`` (any of CRLF, CR, LF splits it), then the blank line that dispatches it."""
    lines = []
    if event is not None:
        if _LINE_END.search(event):
            raise ValueError("an event type cannot contain CR or LF")
        lines.append("event: " + event)
    if id is not None:
        if _LINE_END.search(id) or "\0" in id:
            raise ValueError("an event id cannot contain CR, LF or NUL")
        lines.append("id: " + id)
    if retry is not None:
        if retry < 0:
            raise ValueError("retry must be a non-negative number of milliseconds")
        lines.append(f"retry: {int(retry)}")
    lines.extend("data: " + part for part in _LINE_END.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def tail_between_events(tail: bytes) -> bool:
    """The same answer as :class:`BoundaryTracker` from the stream's last 4 bytes (or the whole
    stream when it is shorter): True at the start and after a blank line, never after a lone
    CR. Four bytes are enough, as at most two CRLFs matter. The relay's pass-through scanner
    keeps those bytes anyway, so asking costs O(1) when a heartbeat or an error is due, and
    nothing per read."""
    if len(tail) < 4:
        tail = b"\n\n" + tail  # the whole stream: its start counts as a boundary
    if tail.endswith(b"\r\n"):
        rest = tail[:-2]
    elif tail.endswith(b"\n"):
        rest = tail[:-1]
    else:
        return False  # content, or a lone CR an LF may still complete
    return rest.endswith((b"\n", b"\r"))


class BoundaryTracker:
    """Tells whether the event-stream bytes forwarded so far end exactly between two events.

    That is the case at the start and after a blank line: two line terminators (CRLF, LF or
    CR) in a row. Only the run of CR/LF bytes at the end of each piece matters (a content byte
    resets the count), so ``feed`` walks back from the end over a few bytes: its cost does not
    grow with the piece's size. A stream ending in a lone CR is *not* counted as between events
    even when that CR ends a blank line: an LF may follow, and a heartbeat inserted between the
    two would turn that LF into an extra blank line.
    """

    __slots__ = ("_cr", "_ends")

    def __init__(self) -> None:
        self._ends = 2  # line terminators at the end of the stream so far (2+: a blank line)
        self._cr = False  # the last byte was CR

    @property
    def at_boundary(self) -> bool:
        return self._ends >= 2 and not self._cr

    def feed(self, data: bytes) -> None:
        i = len(data)
        while i and data[i - 1] in (10, 13):
            i -= 1
        if i:  # a content byte: the count starts again after it
            self._ends, self._cr = 0, False
        for byte in data[i:]:
            if byte == 13:
                self._ends += 1
                self._cr = True
            elif self._cr:  # the LF of a CRLF: the CR already counted
                self._cr = False
            else:
                self._ends += 1
