"""What benchmark F puts on the wire and reads back: event data, the subscribers' scan of a
stream, and the end of a publish's answer. Pure functions over bytes (no sockets)."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

DATA = b"data: "
TS_LEN = 17  # "%.6f" of time.time(): 10 digits, a dot, 6 digits (until the year 2286)
# Bytes kept across reads: a "data: " and its timestamp split by a read boundary.
KEEP = len(DATA) + TS_LEN - 1


@dataclass
class Tally:
    """Everything the subscribers saw; ``live[c]``: subscribers connected to channel c."""

    channels: int = 1
    received: int = 0
    bad: int = 0  # a "data: " line whose timestamp did not parse
    subscribed: int = 0
    drops: int = 0  # connections lost after their 200, before we closed them
    closing: bool = False
    latency: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    live: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.live = [0] * self.channels

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def event_data(size: int, now: float | None = None) -> bytes:
    """An event's data: the send time first (what subscribers parse), padded to ``size``."""
    stamp = b"%.6f" % (time.time() if now is None else now)
    assert len(stamp) == TS_LEN
    return stamp + b" " + b"x" * max(0, size - TS_LEN - 1)


def scan(buf: bytes, now: float, tally: Tally) -> int:
    """Count the events in ``buf`` and their latencies; return where the unread tail starts.

    Only ``data: `` and the timestamp after it are looked at: ids, event names, heartbeats,
    ``retry:`` and chunk-size lines never contain that. The tail kept for the next read is
    the end of ``buf`` that may hold the start of a split ``data: <timestamp>``, from its
    first ``d`` (the padding has none, so after a whole event nothing is kept)."""
    pos = 0
    while (i := buf.find(DATA, pos)) >= 0:
        end = i + len(DATA) + TS_LEN
        if end > len(buf):
            return i
        try:
            tally.latency.append(now - float(buf[i + len(DATA):end]))
        except ValueError:
            tally.bad += 1
        tally.received += 1
        pos = end
    j = buf.find(b"d", max(pos, len(buf) - KEEP))
    return len(buf) if j < 0 else j


def parse_response(buf: bytes) -> tuple[int, int] | None:
    """(status, end of the response) of the HTTP/1.1 response at the start of ``buf``, or None
    while it is incomplete. Content-Length and chunked bodies; a close-delimited body is taken
    as empty (no hub answers a publish that way)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = buf[:head_end].split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    pos = head_end + 4
    if not chunked:
        return (status, pos + length) if len(buf) >= pos + length else None
    end = chunked_end(buf, pos)
    return None if end is None else (status, end)


def chunked_end(buf: bytes, pos: int) -> int | None:
    """Where the chunked body starting at ``pos`` ends (after its last CRLF), or None while
    it is incomplete. These hubs send no trailers: the terminating CRLF follows the 0 chunk."""
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        size = int(buf[pos:nl].split(b";")[0], 16)
        if size == 0:
            return nl + 4 if len(buf) >= nl + 4 else None
        pos = nl + 2 + size + 2
        if pos > len(buf):
            return None
