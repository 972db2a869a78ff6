"""Event-stream facts the relay needs, sans-IO: the heartbeat line, event boundaries, the end
of an OpenAI-style stream, and the encoding of one event (WHATWG HTML, "Server-sent events").

The relay never parses the events it relays: it only looks at the last bytes it forwarded, to
know whether it may insert a heartbeat comment or a final error event without changing what a
client parses. A conformant parser lives with the tests (``tests/support/sse_parser.py``), as
the oracle these rules are checked against.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(r"\r\n|\r|\n")

# A lone comment line. Sent only between events it dispatches nothing in any conformant parser;
# ": ping" plus a blank line would make parsers that keep a last event id (openai-python does)
# dispatch an empty event and fail to decode it.
HEARTBEAT = b": heartbeat\n"

# The head of every event stream the relay answers itself (mock, channels, resumable streams):
# no caching, and no buffering by an nginx in front.
EVENT_STREAM_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no")]


def encode_event(data: str, event: str | None = None, id: str | None = None,
                 retry: int | None = None) -> bytes:
    """One event as bytes: ``event:``/``id:``/``retry:`` lines, one ``data:`` line per line of
    ``data`` (any of CRLF, CR, LF splits it), then the blank line that dispatches it."""
    head = ""
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("an event type cannot contain CR or LF")
        head = "event: " + event + "\n"
    if id is not None:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError("an event id cannot contain CR, LF or NUL")
        head += "id: " + id + "\n"
    if retry is not None:
        if retry < 0:
            raise ValueError("retry must be a non-negative number of milliseconds")
        head += f"retry: {int(retry)}\n"
    if "\n" in data or "\r" in data:
        body = "".join(["data: " + part + "\n" for part in _LINE_END.split(data)])
    else:  # (most events are one line: no split)
        body = "data: " + data + "\n"
    return (head + body + "\n").encode()


def tail_between_events(tail: bytes) -> bool:
    """Whether an event stream stands exactly between two events, from its last 4 bytes (or
    the whole stream when it is shorter): True at the start and after a blank line (two line
    ends in a row: CRLF, LF or CR), never after a lone CR, which an LF may still complete (a
    comment inserted between the two would turn that LF into an extra blank line). Four bytes
    are enough, as at most two CRLFs matter. The upstream body readers keep those bytes anyway,
    so asking costs O(1) when a heartbeat or an error is due, and nothing per read."""
    if len(tail) < 4:
        tail = b"\n\n" + tail  # the whole stream: its start counts as a boundary
    if tail.endswith(b"\r\n"):
        rest = tail[:-2]
    elif tail.endswith(b"\n"):
        rest = tail[:-1]
    else:
        return False  # content, or a lone CR an LF may still complete
    return rest.endswith((b"\n", b"\r"))


def ends_with_done(tail: bytes) -> bool:
    """Whether an event stream's last event is ``data: [DONE]`` (any line-end style), from the
    stream's last bytes: how an OpenAI-style stream says it finished."""
    last = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return last.strip() in (b"data: [DONE]", b"data:[DONE]")
