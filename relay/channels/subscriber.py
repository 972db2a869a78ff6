"""One subscriber: an event stream to one client, fed by the hub, never waited for.

A subscriber starts *catching up*: it is registered for live events first, then sent its
replay (the history after its Last-Event-ID), and only then the live events that arrived in the
meantime, each once: those whose id the replay already covered are dropped. Doing it in this
order is what makes a reconnect lose nothing and repeat nothing, even when events are published
during the replay (the lost-or-duplicated bugs of several Redis-backed SSE libraries came from
replaying first and registering after).

Once caught up, and once a live event newer than all it was sent has come, a subscriber is
``fast``: the hub writes the shared bytes straight to its transport, with no id check. Until
that event, live events still go through the id check: an event the replay already sent may
still be on its way (its Redis pub/sub message behind the replay's answer on the other
connection, or in a fan-out slice queued before the replay), and it comes before any newer one.
A subscriber stops being fast while its client is slow (then each write checks the buffer
against the bound), and when it ends.

What a subscriber was sent, for its access-log line: the events (the replay, a ``relay.reset``,
live ones) and the bytes, chunk framing included; a heartbeat or the ``retry:`` line is bytes,
not an event. What goes through the exchange (the slow path) is counted as it is sent (bytes
by ``Exchange.sent``). The fast path adds nothing per write: the hub leaves the channel's
:data:`Mark` (events and bytes handed out so far on that channel) on the subscriber with each
event, and a run of fast writes, from the moment the subscriber becomes fast to the moment it
stops, is counted once, as the difference of the marks. That holds because a subscriber is
handed every event of its channel from the moment it is added, in order, and each one either
by the fast path or by :meth:`Subscriber.deliver`, never both.

A subscriber knows its hub only as a :class:`SubscriberHub`, the few calls it makes on it,
defined here: the hub module imports this one (it holds subscribers), and this one imports
nothing of the hub's, so the two do not import each other and a test can hand a subscriber
any object with those methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..http1.sse import HEARTBEAT
from ..net.exchange import Exchange
from .events import ChannelEvent, EventKey, reset_event

Mark = tuple[int, int]  # a channel's events and bytes handed to its subscribers so far


class SubscriberHub(Protocol):
    """What a subscriber asks of the hub that added it (:class:`relay.channels.hub.Hub` is
    one): the time, a watch on it while its client takes nothing, and its way out. The hub
    sets ``sub.hub`` when it adds a subscriber; the subscriber sets it back to None when it
    leaves, so each of these is called only while the hub holds it."""

    def now(self) -> float:
        """The loop's time: when the client paused, compared with it at each tick."""
        ...

    def watch(self, sub: Subscriber) -> None:
        """``sub``'s client paused: look at it at each tick, and drop it once it stalls."""
        ...

    def unwatch(self, sub: Subscriber) -> None:
        """``sub``'s client takes bytes again."""
        ...

    def remove(self, sub: Subscriber) -> None:
        """``sub`` has ended: hand it nothing more."""
        ...

    def drop(self, sub: Subscriber) -> None:
        """``sub`` cannot keep up: count it and cut it (it reconnects and replays)."""
        ...


class Subscriber:
    """The listener of one subscribing exchange (see the module docstring)."""

    __slots__ = ("_bound", "_catching_up", "_ex", "_on_end", "_pending", "_run", "_settled",
                 "channel", "events", "fast", "hub", "last", "mark", "paused_since", "sent",
                 "write")

    def __init__(self, ex: Exchange, channel: str, bound: int,
                 on_end: Callable[[Subscriber, str], None]) -> None:
        self._ex = ex
        self.channel = channel
        self._bound = bound
        self._on_end = on_end  # (how it ended: for the record)
        self.hub: SubscriberHub | None = None
        self.last: EventKey | None = None  # the newest id sent
        self.paused_since: float | None = None
        self._catching_up = True
        self._settled = False  # a live event newer than the catch-up came: no repeat can follow
        self._pending: list[ChannelEvent] = []
        self.fast = False
        self.write: Callable[[bytes], None] = ex.transport_write()
        self.sent = 0  # bytes the hub wrote (runs of fast writes, heartbeats)
        self.events = 0  # events sent, by either way
        self.mark: Mark = (0, 0)  # the channel's mark at the last event handed to it
        self._run: Mark = (0, 0)  # the mark when the current run of fast writes began
        ex.listen(self)

    def catch_up(self, replayed: list[ChannelEvent], reset: bool, oldest: str | None) -> None:
        """Send the replay (after a reset event when the position was lost), then the live
        events that came meanwhile and are newer than it; from then on, the fast path."""
        if reset:
            self._send_bytes(reset_event(oldest))
            self.events += 1
        for event in replayed:
            self._send(event)
        pending, self._pending = self._pending, []
        self._catching_up = False
        for event in pending:
            self._send(event)
        self._settled = self.last is None  # (nothing sent yet: nothing to repeat)
        self._set_fast(self._may_be_fast())

    def _set_fast(self, fast: bool) -> None:
        """Begin or end a run of fast writes, and count the one that ends."""
        if fast == self.fast:
            return
        self.fast = fast
        if fast:
            self._run = self.mark
        else:
            (events, size), (events0, size0) = self.mark, self._run
            self.events += events - events0
            self.sent += size - size0

    def _may_be_fast(self) -> bool:
        return (self._settled and not self._catching_up and self._ex.open and self._ex.chunked
                and self.paused_since is None)

    def deliver(self, event: ChannelEvent, mark: Mark) -> None:
        """The slow path: catching up, a slow client, an HTTP/1.0 client, or the end. ``mark``:
        the channel's, with this event."""
        self.mark = mark
        if not self._ex.open:
            return
        if self._catching_up:
            self._pending.append(event)
            return
        if self._send(event) and not self._settled:  # the first live event past the catch-up
            self._settled = True
            self._set_fast(self._may_be_fast())
        slow = self.paused_since is not None and self._ex.buffered() > self._bound
        if slow and self.hub is not None:
            self.hub.drop(self)

    def _send(self, event: ChannelEvent) -> bool:
        if self.last is not None and event.key <= self.last:
            return False  # already sent (by the replay)
        self.last = event.key
        self._send_bytes(event.raw)
        self.events += 1
        return True

    def _send_bytes(self, raw: bytes) -> None:
        self._ex.write(raw)  # (the exchange frames it for the client: a chunk, or as it is)

    def heartbeat(self, framed: bytes) -> None:
        """A comment line (``framed``: as a chunk), never to a client that is behind."""
        if self.fast:
            self.write(framed)
            self.sent += len(framed)  # (not an event: outside the marks)
        elif self._ex.open and not self._catching_up and self.paused_since is None:
            self._ex.write(HEARTBEAT)

    def counts(self) -> tuple[int, int]:
        """(body bytes, events) sent to this subscriber's client so far."""
        sent, events = self.sent + self._ex.sent, self.events
        if self.fast:  # (the run of fast writes going on)
            sent += self.mark[1] - self._run[1]
            events += self.mark[0] - self._run[0]
        return sent, events

    def stalled(self, now: float, stall: float) -> bool:
        return self.paused_since is not None and now - self.paused_since >= stall

    def cut(self) -> None:
        """Drop a subscriber that cannot keep up: the connection is cut, so the client sees a
        broken stream (not a clean end), reconnects and replays."""
        self._end("slow_subscriber")
        self._ex.abort()

    def close(self) -> None:
        """End the stream cleanly (a drain, a cancel): an EventSource reconnects and replays."""
        self._ex.end()
        self._end("complete")  # (after the end: its count has the last chunk)

    def _end(self, how: str) -> None:
        self._set_fast(False)
        if self.hub is not None:
            self.hub.remove(self)
            self.hub = None
            self._on_end(self, how)

    # -- the exchange's listener ---------------------------------------------------------------

    def on_client_paused(self) -> None:
        self._set_fast(False)
        hub = self.hub
        self.paused_since = hub.now() if hub is not None else 0.0
        if hub is not None:
            hub.watch(self)

    def on_client_resumed(self) -> None:
        self.paused_since = None
        if self.hub is not None:
            self.hub.unwatch(self)
        self._set_fast(self._may_be_fast())

    def on_client_gone(self) -> None:
        self._end("client_disconnect")

    def on_shutdown(self) -> None:
        self.close()

    def on_draining(self) -> None:
        self.close()  # it would never finish on its own: end it now, it reconnects elsewhere
