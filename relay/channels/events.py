"""A channel's events: their ids, and their bytes, encoded once for every subscriber.

An id is ``<milliseconds>-<sequence>``: the publish time, and a counter for events published
in the same millisecond. That is the shape of a Redis Stream id, so the memory and Redis
brokers give the same ids, and it keeps growing across restarts (a relay that restarts does
not reuse the ids its clients already saw). Ids are compared as ``(ms, seq)`` pairs.

Ids never repeat on a channel: a broker numbers all its channels from one counter (the memory
broker in this process, the Redis broker in one Redis key), so a channel whose history was
evicted and that is published to again in the same millisecond still gets ids past all it had.

Each event is encoded once, when published, as one chunk (``framed``): fan-out hands the very
same bytes object to every subscriber's transport. Only those bytes are kept (``raw``, the
event-stream bytes without the chunk framing, for HTTP/1.0 subscribers and replays, is cut
from them when asked for), so an event holds ``len(framed)`` bytes plus its few objects
(``OVERHEAD``): what the history's byte caps count.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..http1.sse import encode_event

EventKey = tuple[int, int]
_ID = re.compile(r"(\d{1,15})-(\d{1,9})")
RESET_TYPE = "relay.reset"
RESERVED = "relay."  # event names the relay's own signals use: refused to publishers
MAX_ID = 25  # bytes of the longest id (15 digits, a dash, 9 digits)
START: EventKey = (0, 0)  # ``0-0``: the position before any event (no event has it)
OVERHEAD = 320  # bytes of the objects around an event's chunk (the event, its id and key)


def parse_id(text: str) -> EventKey | None:
    """``"1700000000000-3"`` -> (1700000000000, 3); None if it is not one of our ids."""
    match = _ID.fullmatch(text.strip())
    return None if match is None else (int(match[1]), int(match[2]))


def format_id(key: EventKey) -> str:
    return f"{key[0]}-{key[1]}"


def next_key(last: EventKey | None, now: float) -> EventKey:
    """The id after ``last`` at time ``now``: strictly greater, even if the clock went back."""
    ms = int(now * 1000)
    if last is not None and ms <= last[0]:
        return last[0], last[1] + 1
    return ms, 0


def data_text(data: Any) -> str:
    """A publish's ``data``: a string as it is, anything else as compact JSON."""
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


class ChannelEvent:
    """One published event (see the module docstring)."""

    __slots__ = ("framed", "id", "key")

    def __init__(self, key: EventKey, data: str, event: str | None = None) -> None:
        self.key = key
        self.id = format_id(key)
        raw = encode_event(data, event=event, id=self.id)
        self.framed = b"%x\r\n%s\r\n" % (len(raw), raw)

    @property
    def raw(self) -> bytes:
        """The event-stream bytes, without the chunk framing (the slow path only)."""
        framed = self.framed
        return framed[framed.index(b"\r\n") + 2:-2]


def reset_event(oldest: str | None) -> bytes:
    """The first event for a client whose Last-Event-ID the relay no longer holds (or never
    did): it lost events, and what follows is all that is held."""
    doc = {"reason": "the events after your Last-Event-ID are no longer held",
           "oldest": oldest}
    return encode_event(json.dumps(doc, separators=(",", ":")), event=RESET_TYPE)
