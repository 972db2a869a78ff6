"""Channel histories in memory: bounded in events, in age, and in the number of channels.

Replay follows one rule, all or nothing (as Centrifugo's recovery): a Last-Event-ID the
history holds gives exactly the events after it; one it does not hold (too old, from before a
restart, malformed) gives a reset, then everything held, so the client knows it lost events
instead of getting a silent partial replay.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ..config import ChannelLimits
from .events import ChannelEvent, EventKey, next_key


class Replay:
    """What a subscriber is sent before the live events: ``reset`` first when its position is
    lost; ``oldest``: the oldest id held (for the reset event)."""

    __slots__ = ("events", "oldest", "reset")

    def __init__(self, events: list[ChannelEvent], reset: bool, oldest: str | None) -> None:
        self.events, self.reset, self.oldest = events, reset, oldest


class History:
    """One channel's recent events, oldest first, with the times they were published."""

    __slots__ = ("_events", "_times", "last")

    def __init__(self) -> None:
        self._events: deque[ChannelEvent] = deque()
        self._times: deque[float] = deque()
        self.last: EventKey | None = None

    def append(self, event: ChannelEvent, now: float, limits: ChannelLimits) -> None:
        self._events.append(event)
        self._times.append(now)
        self.last = event.key
        while len(self._events) > limits.history:
            self._events.popleft()
            self._times.popleft()
        if now - self._times[0] > limits.ttl:  # (the usual case, nothing expired: no call)
            self.expire(now, limits.ttl)

    def expire(self, now: float, ttl: float) -> None:
        while self._times and now - self._times[0] > ttl:
            self._events.popleft()
            self._times.popleft()

    def __len__(self) -> int:
        return len(self._events)

    def replay(self, after: EventKey | None, given: bool) -> Replay:
        """``given``: the client sent a Last-Event-ID (``after`` is None if it was malformed)."""
        events = list(self._events)
        oldest = events[0].id if events else None
        if not given:
            return Replay([], False, oldest)
        for i, event in enumerate(events):
            if event.key == after:
                return Replay(events[i + 1:], False, oldest)
        return Replay(events, True, oldest)


class Histories:
    """The histories of all channels, at most ``limits.max_channels`` of them (the one
    published to least recently is dropped first)."""

    def __init__(self, limits: ChannelLimits) -> None:
        self._limits = limits
        self._channels: OrderedDict[str, History] = OrderedDict()

    def publish(self, channel: str, data: str, event: str | None, now: float) -> ChannelEvent:
        history = self._channels.get(channel)
        if history is None:
            history = self._channels[channel] = History()
            while len(self._channels) > self._limits.max_channels:
                self._channels.popitem(last=False)
        else:
            self._channels.move_to_end(channel)
        published = ChannelEvent(next_key(history.last, now), data, event)
        history.append(published, now, self._limits)
        return published

    def replay(self, channel: str, after: EventKey | None, given: bool, now: float) -> Replay:
        history = self._channels.get(channel)
        if history is None:  # unknown or expired: just empty (and nothing is created)
            return Replay([], given, None)
        history.expire(now, self._limits.ttl)
        return history.replay(after, given)

    def __len__(self) -> int:
        return len(self._channels)
