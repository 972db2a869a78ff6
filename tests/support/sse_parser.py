"""A conformant event-stream parser (WHATWG HTML, "Parsing an event stream" and "Interpreting
an event stream", 9.2.5-9.2.6), rule by rule; the comments quote the rules they implement.

The relay never parses the events it relays. This parser is the tests' oracle: what a browser's
EventSource or an SDK would make of the bytes a client received.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


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
