"""One timer for many deadlines.

Each upstream connection in flight has a deadline (first byte, then idle read). A uvloop timer
per connection costs ~600 bytes and a create/cancel per request; instead, one periodic tick per
pool walks the connections in flight and lets each check its own deadline. A timeout then fires
between its time and one tick later; the tick is a quarter of the shortest timeout, at most 1 s.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class HasDeadline(Protocol):
    def check_deadline(self, now: float) -> None: ...


class Deadlines:
    """Calls ``check_deadline(now)`` on every member once per ``interval`` while any exists."""

    __slots__ = ("_handle", "_loop", "_members", "interval")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self.interval = interval
        self._members: set[HasDeadline] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, member: HasDeadline) -> None:
        self._members.add(member)
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def discard(self, member: HasDeadline) -> None:
        self._members.discard(member)

    def __len__(self) -> int:
        return len(self._members)

    def _tick(self) -> None:
        self._handle = None
        now = self._loop.time()
        for member in list(self._members):
            member.check_deadline(now)
        if self._members:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._members.clear()
