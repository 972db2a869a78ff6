"""Channel histories in memory: bounded in events, in bytes, in age, and in the number of channels.

Bounds, each counting what it says:

* per channel, at most ``limits.history`` events and ``limits.history_bytes`` bytes, the oldest
  going first;
* all channels together, at most ``limits.memory`` bytes: beyond, the oldest events of the
  channel published to least recently go first (and the channel when it has none left);
* at most ``limits.max_channels`` channels (the one published to least recently goes first);
* an event older than ``limits.ttl`` seconds is dropped.

An event's bytes are its chunk plus a fixed allowance for its objects
(:data:`relay.channels.events.OVERHEAD`), counted once when it is kept and once when it goes:
one add and one subtract, never a re-sum. Its age is read from its id (the publish time).

Ids come from one counter for all channels (:func:`relay.channels.events.next_key` on the last
id given to any channel), so an evicted channel published to again, even in the same
millisecond, never repeats an id a subscriber may hold.

Replay follows one rule, all or nothing (as Centrifugo's recovery): a Last-Event-ID the
history holds gives exactly the events after it; one it does not hold (too old, evicted, from
before a restart, from another channel, from the future, malformed) gives a reset, then
everything held, so the client knows it lost events instead of getting a silent partial replay.
``0-0`` (:data:`relay.channels.events.START`, before any id) is held by every history: it gives
everything held, with a reset only when the channel lost events (some were dropped from its
history, or the channel itself was: a history made again after an eviction counts as one that
lost events, as it may be the evicted one).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ..config import ChannelLimits
from .events import OVERHEAD, START, ChannelEvent, EventKey, next_key


class Replay:
    """What a subscriber is sent before the live events: ``reset`` first when its position is
    lost; ``oldest``: the oldest id held (for the reset event)."""

    __slots__ = ("events", "oldest", "reset")

    def __init__(self, events: list[ChannelEvent], reset: bool, oldest: str | None) -> None:
        self.events, self.reset, self.oldest = events, reset, oldest


class History:
    """One channel's recent events, oldest first, and the bytes they hold (``bytes``). An
    event's age is read from its id (its publish time in ms; later when the clock went back)."""

    __slots__ = ("_events", "bytes", "lost")

    def __init__(self, lost: bool = False) -> None:
        self._events: deque[ChannelEvent] = deque()
        self.bytes = 0
        self.lost = lost  # an event of this channel was dropped: a replay from 0-0 is partial

    def append(self, event: ChannelEvent, size: int, now: float, limits: ChannelLimits) -> None:
        """Keep ``event`` (``size`` bytes), dropping the oldest past the bounds."""
        events = self._events
        events.append(event)
        self.bytes += size
        while len(events) > limits.history or self.bytes > limits.history_bytes:
            self.bytes -= len(events.popleft().framed) + OVERHEAD  # (drop_oldest: inline)
            self.lost = True
        if events and now - events[0].key[0] / 1000 > limits.ttl:  # (usually none expired)
            self.expire(now, limits.ttl)

    def drop_oldest(self) -> int:
        """Drop the oldest event; its bytes."""
        size = len(self._events.popleft().framed) + OVERHEAD
        self.bytes -= size
        self.lost = True
        return size

    def expire(self, now: float, ttl: float) -> int:
        """Drop the events older than ``ttl``; their bytes."""
        events, freed = self._events, 0
        while events and now - events[0].key[0] / 1000 > ttl:
            freed += self.drop_oldest()
        return freed

    def __len__(self) -> int:
        return len(self._events)

    def replay(self, after: EventKey | None, given: bool) -> Replay:
        """``given``: the client sent a Last-Event-ID (``after`` is None if it was malformed)."""
        events = list(self._events)
        oldest = events[0].id if events else None
        if not given:
            return Replay([], False, oldest)
        if after == START:  # from the beginning: all of it, a reset if some was dropped
            return Replay(events, self.lost, oldest)
        for i, event in enumerate(events):
            if event.key == after:
                return Replay(events[i + 1:], False, oldest)
        return Replay(events, True, oldest)


class Histories:
    """The histories of all channels (see the module docstring); ``bytes``: what they hold."""

    def __init__(self, limits: ChannelLimits) -> None:
        self._limits = limits
        self._channels: OrderedDict[str, History] = OrderedDict()
        self._last: EventKey | None = None  # the last id given, to any channel
        self._evicted = False  # a whole channel was dropped (it may be made again)
        self.bytes = 0

    def publish(self, channel: str, data: str, event: str | None, now: float) -> ChannelEvent:
        history = self._channels.get(channel)
        if history is None:
            history = self._channels[channel] = History(self._evicted)
            while len(self._channels) > self._limits.max_channels:
                self.bytes -= self._channels.popitem(last=False)[1].bytes
                self._evicted = True
        else:
            self._channels.move_to_end(channel)
        key = self._last = next_key(self._last, now)
        published = ChannelEvent(key, data, event)
        before = history.bytes
        history.append(published, len(published.framed) + OVERHEAD, now, self._limits)
        self.bytes += history.bytes - before
        if self.bytes > self._limits.memory:
            self._shed()
        return published

    def _shed(self) -> None:
        """Over ``limits.memory``: the oldest events of the least recently published channels
        go, and each channel left with none."""
        channels = self._channels
        while self.bytes > self._limits.memory and channels:
            name, oldest = next(iter(channels.items()))
            if oldest:
                self.bytes -= oldest.drop_oldest()
            if not oldest:
                del channels[name]
                self._evicted = True

    def replay(self, channel: str, after: EventKey | None, given: bool, now: float) -> Replay:
        history = self._channels.get(channel)
        if history is None:  # unknown or evicted: just empty (and nothing is created)
            return Replay([], given and (after != START or self._evicted), None)
        self.bytes -= history.expire(now, self._limits.ttl)
        return history.replay(after, given)

    def __len__(self) -> int:
        return len(self._channels)
