"""A resumable stream: an LLM generation that outlives the connection that asked for it.

The upstream's event stream is cut into numbered events (:mod:`relay.streams.numbering`) and
kept in a list, ``events[i]`` being the event with id ``i + 1``. Every reader is a
:class:`Follower` with a position in that list: the client that started the stream, and any
that resumed it (``GET /v1/streams/{id}``). A follower writes what it has not had yet while its
client takes it, and simply stops writing while the client is slow: the events wait in the
list, so a slow reader never holds back the generation or another reader, and never grows
anything but its own position's lag (bounded by the stream's byte cap).

The stream ends once (:meth:`ResumableStream.finish`): completed by the upstream, or ended by
the relay with a final numbered error event (``cancelled``, ``orphaned``, ``too_large``,
``relay_shutdown``, an upstream failure), so a reader that reconnects later knows how it ended.
A follower that has everything of an ended stream ends its response cleanly. It counts the
events it wrote (per write: a catch-up slice knows how many it holds), for its access-log line;
the bytes are the exchange's count (``Exchange.sent``). A heartbeat or the tail is bytes only.

The registry (:mod:`relay.streams.registry`) decides what happens around it: who may find it,
the orphan timer, the expiry, and with Redis the copy every instance can read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import error_body
from ..http1.sse import HEARTBEAT
from ..net.exchange import Exchange
from .numbering import EventNumberer

if TYPE_CHECKING:
    from .registry import Streams

# Bytes per write while catching up (one chunk, or one event if bigger), then see whether the
# client's write buffer passed its high-water mark (64 KiB by default) and paused: a reader
# that does not read holds at most that mark and one slice, whatever the events' sizes.
_SLICE = 64 * 1024


def numbered(event: bytes, seq: int) -> bytes:
    """``event`` (ending in ``\\n\\n``, the relay's own) with its ``id:`` line."""
    return event[:-1] + b"id: %d\n\n" % seq


def slice_end(events: list[bytes], pos: int) -> int:
    """Where a catch-up write from ``pos`` ends: at most ``_SLICE`` bytes, or one event."""
    end, size = pos + 1, len(events[pos])
    while end < len(events) and size + len(events[end]) <= _SLICE:
        size += len(events[end])
        end += 1
    return end


def error_event(message: str, code: str, type_: str = "server_error") -> bytes:
    """The relay's final event for a stream it ended: an OpenAI-style error, so SDKs raise."""
    return b"data: " + error_body(message, type_, code) + b"\n\n"


class ResumableStream:
    """One generation's events and readers (see the module docstring)."""

    __slots__ = ("_numberer", "_registry", "events", "followers", "id", "owner", "produced",
                 "size", "status", "stop_upstream", "tail")

    def __init__(self, stream_id: str, owner: bytes | None, registry: Streams) -> None:
        self.id, self.owner = stream_id, owner
        self._registry = registry
        self.events: list[bytes] = []
        self.size = 0  # bytes held: events, tail, and held back by the numberer
        self.tail = b""  # bytes after the last event that never got their blank line
        self.status: str | None = None  # None while live; then how it ended
        self.produced = 0  # events the upstream produced (the relay's own final one aside)
        self.followers: list[Follower] = []
        self.stop_upstream: Callable[[], None] | None = None  # set by the owner of the upstream
        self._numberer = EventNumberer()

    @property
    def live(self) -> bool:
        return self.status is None

    # -- the upstream side -------------------------------------------------------------------

    def feed(self, pieces: list[bytes]) -> None:
        """Body pieces of the upstream's event stream (the proxy's sink)."""
        if self.status is not None:
            return
        start = len(self.events)
        numberer = self._numberer
        size = self.size - numberer.held  # (what was held back comes out as events, or stays)
        for piece in pieces:
            for seq, block in numberer.feed(piece):
                if seq:
                    self.events.append(block)
                    size += len(block)
                else:  # a comment-only block: to the readers that are live, not kept
                    self._pump()
                    for f in self.followers:
                        f.live_only(block, len(self.events))
        self.produced = numberer.seq
        size += numberer.held  # (an event that never ends counts too)
        grown, self.size = size - self.size, size
        self._registry.held += grown
        if len(self.events) > start:
            self._registry.appended(self, start)
            self._pump()
        limit = self._registry.limits.max_bytes
        if self.size > limit:
            self.end(f"the stream outgrew the relay's limit for a resumable stream ({limit} "
                     "bytes); the generation was stopped", "too_large", later=True)
        elif grown > 0 and not self._registry.has_room():
            self.end("resumable streams hold all the memory the relay gives them "
                     "(--resume-memory); the generation was stopped", "too_large", later=True)

    def _hold(self, size: int) -> None:
        """This stream now holds ``size`` bytes (events, tail, held back by the numberer):
        the registry's count follows (``feed`` does the same inline)."""
        self._registry.held += size - self.size
        self.size = size

    def complete(self) -> None:
        """The upstream ended its body cleanly."""
        if self.status is None:
            start = len(self.events)
            size = self.size - self._numberer.held
            for seq, block in self._numberer.finish():
                if seq:
                    self.events.append(block)
                else:
                    self.tail += block
                size += len(block)
            self.produced = self._numberer.seq
            self._hold(size)
            if len(self.events) > start:
                self._registry.appended(self, start)
            self.finish("completed")

    def end(self, message: str, code: str, type_: str = "server_error",
            later: bool = False) -> None:
        """The relay ends the stream: the upstream is closed (it stops generating), readers
        get a final numbered error event. ``later``: called from the upstream's own read, so
        its connection is closed once that read returns."""
        if self.status is not None:
            return
        stop, self.stop_upstream = self.stop_upstream, None
        if stop is not None:
            if later:
                self._registry.loop.call_soon(stop)
            else:
                stop()
        self.add_final(error_event(message, code, type_))
        self.finish(code)

    def add_final(self, event: bytes) -> None:
        """A last event of the relay's own (``event``: ending in a blank line), numbered."""
        start, numberer = len(self.events), self._numberer
        size = self.size - numberer.held
        if numberer.held:  # end the torn event first: ours must be its own event
            for seq, block in numberer.feed(b"\n\n"):
                if seq:
                    self.events.append(block)
                    size += len(block)
        seq = numberer.seq + 1
        numberer.seq = seq
        self.events.append(numbered(event, seq))
        self._hold(size + len(self.events[-1]) + numberer.held)
        self._registry.appended(self, start)

    def finish(self, status: str) -> None:
        self.status = status
        self.stop_upstream = None
        self._registry.finished(self)
        self._pump()

    def heartbeat(self) -> bool:
        """A comment line to the readers that are caught up, only between two events."""
        if self.status is not None or self._numberer.held:
            return False
        sent = False
        for f in self.followers:
            sent |= f.live_only(HEARTBEAT, len(self.events))
        return sent

    # -- readers -----------------------------------------------------------------------------

    def add(self, follower: Follower) -> None:
        self.followers.append(follower)
        self._registry.followed(self)
        follower.pump()

    def remove(self, follower: Follower) -> None:
        if follower in self.followers:
            self.followers.remove(follower)
            if not self.followers:
                self._registry.unfollowed(self)

    def position_after(self, last_id: int) -> int:
        """The list position of the event after id ``last_id`` (ids beyond the end: the end)."""
        return max(0, min(last_id, len(self.events)))

    def _pump(self) -> None:
        for f in list(self.followers):
            f.pump()


class Follower:
    """One reader of a resumable stream: a client exchange and its position (see the module
    docstring). It is the exchange's listener: a slow client stops its writes, a client that
    leaves takes it off the stream (the generation goes on)."""

    __slots__ = ("_ex", "_left", "_on_end", "_paused", "_resume", "events", "off", "pos",
                 "stream")

    def __init__(self, ex: Exchange, stream: ResumableStream, pos: int,
                 on_end: Callable[[Follower, str], None]) -> None:
        self._ex, self.stream, self.pos, self._on_end = ex, stream, pos, on_end
        self.off = 0  # bytes of events[pos] written (an event written by slices)
        self.events = 0  # events written to this reader (its own error events too)
        self._resume: Callable[[int], bytes] | None = None  # the drain's words, once told
        self._paused, self._left = ex.flow.paused, False
        ex.listen(self)

    def pump(self) -> None:
        """Write what this reader has not had yet, while its client takes it; end the response
        once it has everything of an ended stream."""
        ex, events = self._ex, self.stream.events
        while not self._paused and self.pos < len(events) and ex.open:
            pos = self.pos
            if self.off or len(events[pos]) > _SLICE:
                # An event bigger than a slice goes by copied slices: a reader that stops
                # reading then holds one slice of it, not a reference to the whole event
                # (which would outlive the stream if it is forgotten).
                piece = events[pos][self.off:self.off + _SLICE]
                self.off += len(piece)
                if self.off == len(events[pos]):
                    self.pos, self.off = pos + 1, 0
                    self.events += 1
                ex.write(piece)
                if self._resume is not None and not self.off:
                    self._tell_now(self._resume)  # (the event it was in is whole now)
                continue
            end = pos + 1 if pos + 1 == len(events) else slice_end(events, pos)
            # One chunk for what is new (one event live, a slice when catching up): chunk
            # boundaries need not be event boundaries, and one chunk is one join.
            ex.write(events[pos] if end - pos == 1 else b"".join(events[pos:end]))
            self.pos = end
            self.events += end - pos
        if self.pos >= len(events) and self.stream.status is not None and ex.open \
                and not self._paused:
            if self.stream.tail:
                ex.write(self.stream.tail)
            ex.end()
            self._leave("complete")  # (after the end: its count has the last chunk)

    def live_only(self, block: bytes, at: int) -> bool:
        """A block that is not kept (a comment), for a reader that is caught up to ``at``."""
        if self.pos == at and not self._paused and self._ex.open:
            self._ex.write(block)
            return True
        return False

    def tell_to_resume(self, event_at: Callable[[int], bytes]) -> None:
        """End this response cleanly with ``event_at(the last id it has)`` (the relay drains:
        resume elsewhere). In the middle of an event written by slices, only once its rest is
        written (by slices, as the client takes them): cut short, the client would read half
        an event, and named by the event before, a resume would repeat it."""
        if self.off:
            self._resume = event_at
        else:
            self._tell_now(event_at)

    def _tell_now(self, event_at: Callable[[int], bytes]) -> None:
        if self._ex.open:
            self._ex.write(event_at(self.pos))
            self.events += 1
            self._ex.end()
            self._leave("drain")

    def evict(self, event: bytes, how: str) -> None:
        """The stream was forgotten before this reader had all of it: the events it lacks
        are gone, so it gets ``event`` (an error, not numbered) and a clean end; or, in the
        middle of an event written by slices, a cut (its rest is gone too, and an error event
        there would be read as part of it)."""
        if self._ex.open and self.off:
            self._leave(how)
            self._ex.abort()
        elif self._ex.open:
            self._ex.write(event)
            self.events += 1
            self._ex.end()
            self._leave(how)
        else:
            self._leave(how)

    def counts(self) -> tuple[int, int]:
        """(body bytes, events) written to this reader's client so far."""
        return self._ex.sent, self.events

    def cut(self) -> None:
        """End the response as a broken one (the relay stops now and cannot say more)."""
        self._leave("relay_shutdown")
        self._ex.abort()

    def _leave(self, how: str) -> None:
        if not self._left:
            self._left = True
            self.stream.remove(self)
            self._on_end(self, how)

    # -- the exchange's listener -------------------------------------------------------------

    def on_client_paused(self) -> None:
        self._paused = True

    def on_client_resumed(self) -> None:
        self._paused = False
        self.pump()

    def on_client_gone(self) -> None:
        self._leave("client_disconnect")

    def on_draining(self) -> None:
        self.stream._registry.draining(self)

    def on_shutdown(self) -> None:
        self.stream._registry.shutting_down(self)
