"""The local side of channels: who subscribes here, and fan-out that never waits for anyone.

:class:`Hub` holds this instance's subscribers per channel. ``deliver`` hands one event's bytes
(encoded once) to every subscriber of its channel, in slices: one per event-loop turn, of at
most ``ChannelLimits.slice`` writes and ``ChannelLimits.slice_time`` seconds, so a publish to
10,000 subscribers never holds the loop for one long iteration: relayed LLM streams keep
flowing between the slices. The time bound is what holds on every machine: a write's cost is
the kernel's, and on loopback it includes the reader's TCP work, so a count of writes alone
would hold the loop longer on a slower machine (bench/README.md has the figures). Slices run
in publish order, so every
subscriber sees a channel's events in order. A channel of at most ``INLINE`` subscribers,
published to while no slice waits, is written at once, inside ``deliver``: no job, no loop
turn (most channels of a many-channel hub, such as one per user, are that small).

Nothing is ever awaited per subscriber. A write goes to the subscriber's transport buffer; a
subscriber whose buffer passes ``slow_buffer`` (512 KiB), or that takes nothing for ``stall``
seconds, is dropped (its connection cut): it reconnects and replays with its Last-Event-ID
(Mercure's per-subscriber buffer, Centrifugo's queue limit). One tick for the whole hub sends a
comment to the subscribers of channels silent for ``heartbeat`` seconds, and drops the stalled.

What the fast path wrote to each subscriber (for its access-log line) is counted per event, not
per write: each channel has a mark, the events and bytes handed out so far, moved on once per
event; a fast write leaves the event's mark on the subscriber, and the subscriber counts a run
of fast writes as the difference between its mark at the run's end and at its start (every
event of its channel after it was added reaches it, in order; see
:class:`relay.channels.subscriber.Subscriber`).

The hub is what a subscriber calls back (:class:`relay.channels.subscriber.SubscriberHub`: the
time, a watch while its client is paused, its removal and its drop); the subscriber's module
defines those calls and imports nothing from here.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from ..config import ChannelLimits
from ..http1.sse import HEARTBEAT
from .events import ChannelEvent
from .subscriber import Mark, Subscriber

_HEARTBEAT_FRAMED = b"%x\r\n%s\r\n" % (len(HEARTBEAT), HEARTBEAT)
INLINE = 16  # subscribers written inside deliver(): well under a slice's time anywhere
STEP = 16  # writes between two looks at the clock in a slice


class _Job:
    """One event (and its channel's mark after it) to hand to a snapshot of a channel's
    subscribers, from ``pos`` on."""

    __slots__ = ("event", "mark", "pos", "subs")

    def __init__(self, event: ChannelEvent | None, mark: Mark, subs: list[Subscriber]) -> None:
        self.event, self.mark, self.subs, self.pos = event, mark, subs, 0


class Stats:
    """Counters the metrics read at scrape time."""

    __slots__ = ("deliveries", "dropped", "heartbeats")

    def __init__(self) -> None:
        self.deliveries = self.dropped = self.heartbeats = 0


class Hub:
    """This instance's subscribers and their fan-out (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ChannelLimits,
                 on_first: Callable[[str], None] | None = None,
                 on_last: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._loop = loop
        # (The loop's time() stands still within a turn; a slice's length needs a real clock.)
        self._clock = clock
        self._inline = min(INLINE, limits.slice)
        self._limits = limits
        self._channels: dict[str, set[Subscriber]] = {}
        self._marks: dict[str, Mark] = {}  # per channel: (events, bytes) handed out so far
        self._last_event: dict[str, float] = {}
        self._jobs: deque[_Job] = deque()
        self._scheduled = False
        self._tick: asyncio.TimerHandle | None = None
        self._on_first, self._on_last = on_first, on_last  # (the Redis broker's SUBSCRIBE)
        self._interval = min(limits.heartbeat, limits.stall) / 2
        self.stats = Stats()
        self.subscribers = 0
        self.paused: set[Subscriber] = set()  # subscribers whose client takes nothing now

    def add(self, sub: Subscriber) -> None:
        subs = self._channels.get(sub.channel)
        if subs is None:
            subs = self._channels[sub.channel] = set()
            self._marks[sub.channel] = (0, 0)
            self._last_event[sub.channel] = self._loop.time()
            if self._on_first is not None:
                self._on_first(sub.channel)
        subs.add(sub)
        self.subscribers += 1
        sub.hub = self
        sub.mark = self._marks[sub.channel]  # every event after this one is handed to it
        if self._tick is None:
            self._tick = self._loop.call_later(self._interval, self._on_tick)

    def remove(self, sub: Subscriber) -> None:
        subs = self._channels.get(sub.channel)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self.paused.discard(sub)
        self.subscribers -= 1
        if not subs:
            del self._channels[sub.channel]
            del self._last_event[sub.channel]
            del self._marks[sub.channel]
            if self._on_last is not None:
                self._on_last(sub.channel)

    def now(self) -> float:
        return self._loop.time()

    def watch(self, sub: Subscriber) -> None:
        self.paused.add(sub)

    def unwatch(self, sub: Subscriber) -> None:
        self.paused.discard(sub)

    def count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def deliver(self, channel: str, event: ChannelEvent) -> int:
        """Queue ``event`` for every local subscriber of ``channel``; how many there are."""
        subs = self._channels.get(channel)
        if not subs:
            return 0
        self._last_event[channel] = self._loop.time()
        events, size = self._marks[channel]
        mark = self._marks[channel] = (events + 1, size + len(event.framed))
        n = len(subs)
        if n <= self._inline and not self._jobs:  # a small channel, nothing before it: now
            self._writes(event, mark, list(subs), 0, n)
        else:
            self._jobs.append(_Job(event, mark, list(subs)))
            self._schedule()
        return n

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        """One slice: at most ``limits.slice`` writes and ``limits.slice_time`` seconds (read
        every ``STEP`` writes), then the loop runs other work."""
        self._scheduled = False
        budget, jobs, clock = self._limits.slice, self._jobs, self._clock
        until = clock() + self._limits.slice_time
        while jobs and budget > 0:
            job = jobs[0]
            end = min(len(job.subs), job.pos + min(budget, STEP))
            if job.event is None:
                self._heartbeats(job.subs, job.pos, end)
            else:
                self._writes(job.event, job.mark, job.subs, job.pos, end)
            budget -= end - job.pos
            job.pos = end
            if end == len(job.subs):
                jobs.popleft()
            if clock() >= until:
                break
        if jobs:
            self._schedule()

    def _writes(self, event: ChannelEvent, mark: Mark, subs: list[Subscriber], start: int,
                end: int) -> None:
        framed = event.framed
        for i in range(start, end):
            sub = subs[i]
            if sub.fast:  # the usual case: one C call, the same bytes for everyone
                sub.mark = mark  # (first: a write that pauses the client ends the fast run)
                sub.write(framed)
            else:
                sub.deliver(event, mark)
        self.stats.deliveries += end - start

    def _heartbeats(self, subs: list[Subscriber], start: int, end: int) -> None:
        for i in range(start, end):
            subs[i].heartbeat(_HEARTBEAT_FRAMED)
        self.stats.heartbeats += end - start

    def _on_tick(self) -> None:
        """Heartbeats for silent channels, and the drop of stalled subscribers."""
        self._tick = None
        now = self._loop.time()
        limits = self._limits
        for channel, subs in self._channels.items():
            if now - self._last_event[channel] >= limits.heartbeat:
                self._last_event[channel] = now
                self._jobs.append(_Job(None, self._marks[channel], list(subs)))
                self._schedule()
        for sub in [s for s in self.paused if s.stalled(now, limits.stall)]:
            self.drop(sub)  # (only paused subscribers can stall: 10k subscribers, a few paused)
        if self._channels:
            self._tick = self._loop.call_later(self._interval, self._on_tick)

    def drop(self, sub: Subscriber) -> None:
        """Cut a subscriber that cannot keep up; it reconnects and replays."""
        self.stats.dropped += 1
        sub.cut()

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._jobs.clear()
