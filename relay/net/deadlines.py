"""Deadlines: the client connection's one timer, and one shared tick for all upstream deadlines.

Both take a :class:`Clock` (the event loop in production; a fake clock in tests, so every timer
is tested exactly: that it fires at its time, and not a moment before).

* :class:`Timer`: a client connection has one deadline at a time (keep-alive idle, then the
  request head, then the body's silence), so it has one timer, re-armed as the request advances.
* :class:`Deadlines`: each upstream connection in flight has a deadline (first byte, then idle
  read). A uvloop timer per connection costs ~600 bytes and a create/cancel per request;
  instead, one periodic tick per pool walks the connections in flight and lets each check its
  own deadline. A timeout then fires between its time and one tick later; the tick is a quarter
  of the shortest timeout, at most 1 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What deadlines need of an event loop."""

    def time(self) -> float: ...
    def call_at(self, when: float, callback: Callable[[], object]) -> Handle: ...
    def call_later(self, delay: float, callback: Callable[[], object]) -> Handle: ...


class Timer:
    """One deadline at a time: ``arm`` replaces the previous one, ``cancel`` drops it.

    Re-arming is the common case (a keep-alive connection re-arms its idle deadline after
    every answer), so it is lazy: a loop timer already set to fire before the new deadline
    is kept, and when it fires early it sets itself again for what is left. ``cancel`` only
    forgets the callback (the loop timer, if any, then fires for nothing or is reused by the
    next ``arm``); ``stop`` also removes it from the loop, for a connection that is gone.
    """

    __slots__ = ("_callback", "_clock", "_deadline", "_handle", "_when")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._handle: Handle | None = None
        self._when = self._deadline = 0.0  # the loop timer's time; the deadline's
        self._callback: Callable[[], None] | None = None

    @property
    def armed(self) -> bool:
        return self._callback is not None

    def arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._deadline = deadline = self._clock.time() + delay
        if self._handle is not None:
            if self._when <= deadline:
                return  # it fires first, then sets itself again for the rest
            self._handle.cancel()
        self._when = deadline
        self._handle = self._clock.call_at(deadline, self._fire)

    def cancel(self) -> None:
        self._callback = None

    def stop(self) -> None:
        self._callback = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._callback is None:
            return
        if self._clock.time() < self._deadline:  # re-armed since: later
            self._when = self._deadline
            self._handle = self._clock.call_at(self._deadline, self._fire)
            return
        callback, self._callback = self._callback, None
        callback()


class HasDeadline(Protocol):
    def check_deadline(self, now: float) -> None: ...


class Deadlines:
    """Calls ``check_deadline(now)`` on every member once per ``interval`` while any exists."""

    __slots__ = ("_clock", "_handle", "_members", "interval")

    def __init__(self, clock: Clock, interval: float) -> None:
        self._clock = clock
        self.interval = interval
        self._members: set[HasDeadline] = set()
        self._handle: Handle | None = None

    def add(self, member: HasDeadline) -> None:
        self._members.add(member)
        if self._handle is None:
            self._handle = self._clock.call_later(self.interval, self._tick)

    def discard(self, member: HasDeadline) -> None:
        self._members.discard(member)

    def __len__(self) -> int:
        return len(self._members)

    def _tick(self) -> None:
        self._handle = None
        now = self._clock.time()
        for member in list(self._members):
            member.check_deadline(now)
        if self._members:
            self._handle = self._clock.call_later(self.interval, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._members.clear()
