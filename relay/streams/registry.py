"""The resumable streams of one relay instance: who finds them, how long they live, and how
they end when nobody comes back.

:class:`Streams` holds every :class:`~relay.streams.stream.ResumableStream` by its id (at
least 128 random bits, URL-safe: the id is a capability when relay tokens are off). Around each
stream it keeps one timer:

* while the stream is live and has no reader, the *orphan* timer (``orphan_timeout``, 60 s):
  when it fires, the upstream is closed, as a plain stream's would be at once when its client
  leaves, and the stream ends with an ``orphaned`` error event;
* once the stream ended, the *expiry* timer (``ttl``, 10 minutes): then it is forgotten, and a
  resume gets 404.

Memory is bounded twice, counting every byte a stream holds (``ResumableStream.size``: its
events, its tail, and what the numberer holds back of an event not ended yet; ``held`` is their
sum, and the gauge): a stream over ``max_bytes`` is stopped (``too_large``); when all streams
together pass ``memory``, the oldest ended ones are forgotten first, and if that is not enough,
the live stream that grew is stopped (``too_large``) and a new resumable request is refused with
503 before anything goes upstream. A forgotten stream's readers still behind are cut, with an
error event (``expired`` or ``evicted``) and a clean end (a cut, in the middle of an event
written by slices): nothing keeps its events once they are no longer counted. With Redis,
mirrors of other instances' streams count in ``held`` too (relay.streams.redis_store). (A
reader's write buffer holds at most its high-water mark and one catch-up slice, see
:class:`~relay.streams.stream.Follower`: every connection's own bound.)

This class keeps everything in this process. :class:`relay.streams.redis_store.RedisStreams`
adds a copy in Redis, so any instance can resume or cancel a stream (its methods here are the
hooks it extends).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..config import ResumeLimits
from .stream import Follower, ResumableStream, error_event


@dataclass
class StreamStats:
    """Counts for /metrics: streams started, resumed (a reader came back), orphaned (nobody
    did), cancelled, expired; events replayed to readers that came back."""

    started: int = 0
    resumed: int = 0
    orphaned: int = 0
    cancelled: int = 0
    expired: int = 0
    replayed: int = 0


def resume_event(stream: ResumableStream, last: int) -> bytes:
    """What a reader gets when the relay drains: where to resume (``last``: the last event it
    was sent; not numbered, not kept)."""
    doc = {"stream_id": stream.id, "last_event_id": str(last),
           "url": f"/v1/streams/{stream.id}"}
    return b"event: relay.resume\ndata: " + json.dumps(doc).encode() + b"\n\n"


class Streams:
    """This instance's resumable streams (see the module docstring)."""

    shared = False  # True when another instance can resume a stream of this one (Redis)

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ResumeLimits) -> None:
        self.loop, self.limits = loop, limits
        self.stats = StreamStats()
        self.held = 0  # bytes held by every stream here (events, tails, held back), mirrors too
        self._streams: dict[str, ResumableStream] = {}  # in creation order
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._live = 0
        self._idle: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def live(self) -> int:
        return self._live

    def has_room(self) -> bool:
        """Whether a new stream may start: the oldest ended streams are forgotten first, until
        the memory bound is met; False if live streams alone fill it."""
        if self.held >= self.limits.memory:
            for old in [s for s in self._streams.values() if not s.live]:
                self._forget(old.id, "the stream was forgotten to make room for others "
                             "(--resume-memory) before this reader had all of it", "evicted")
                if self.held < self.limits.memory:
                    break
        return self.held < self.limits.memory

    def create(self, owner: bytes | None) -> ResumableStream | None:
        """A new live stream, or None when memory is full of live streams."""
        if not self.has_room():
            return None
        sid = "rs_" + secrets.token_urlsafe(18)  # 144 random bits
        stream = ResumableStream(sid, owner, self)
        self._streams[sid] = stream
        self._live += 1
        self.stats.started += 1
        self._started(stream)
        return stream

    async def find(self, stream_id: str) -> ResumableStream | None:
        """The stream with this id, if it is still held."""
        return self._streams.get(stream_id)

    async def cancel(self, stream: ResumableStream) -> None:
        """Stop the generation now (idempotent: an ended stream stays as it ended)."""
        if stream.live:
            self.stats.cancelled += 1
            stream.end("the stream was cancelled (POST /v1/streams/{id}/cancel)", "cancelled")

    async def drain(self, timeout: float) -> bool:
        """The relay stops: live streams may finish for up to ``timeout`` seconds, then the
        rest end with ``relay_shutdown``. True if all finished."""
        if self._live:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), max(timeout, 0.0))
            except TimeoutError:
                pass
            finally:
                self._idle = None
        clean = not self._live
        self.stop_live()
        return clean

    def stop_live(self) -> int:
        """The drain's last step (or a second signal's): every live generation ends with
        ``relay_shutdown``. How many did."""
        live = [s for s in self._streams.values() if s.live]
        for stream in live:
            stream.end("the relay is shutting down; the generation was stopped",
                       "relay_shutdown")
        return len(live)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # -- hooks, called by the streams (extended by the Redis store) -------------------------

    def hold(self, grown: int) -> None:
        self.held += grown

    def _started(self, stream: ResumableStream) -> None:
        """A stream began (its first reader is added next)."""

    def appended(self, stream: ResumableStream, start: int) -> None:
        """Events from ``start`` on were added to ``stream`` (which counted them in ``held``)."""

    def finished(self, stream: ResumableStream) -> None:
        if stream.id not in self._streams:
            return
        self._live -= 1
        if stream.status == "orphaned":
            self.stats.orphaned += 1
        self._arm(stream.id, self.limits.ttl, self._expire)
        if not self._live and self._idle is not None:
            self._idle.set()

    def followed(self, stream: ResumableStream) -> None:
        if stream.live:
            self._disarm(stream.id)

    def unfollowed(self, stream: ResumableStream) -> None:
        if stream.live:
            self._arm(stream.id, self.limits.orphan_timeout, self._orphaned)

    def draining(self, follower: Follower) -> None:
        """The relay drains. Alone, a reader stays to the end (or the drain timeout), as a
        plain stream does: nowhere else could resume it. With Redis, it is told where to
        resume and let go now, while the generation goes on here into Redis."""
        if self.shared:
            follower.tell_to_resume(partial(resume_event, follower.stream))

    def shutting_down(self, follower: Follower) -> None:
        """The drain timeout passed with this reader still here: the stream ends."""
        follower.stream.end("the relay is shutting down; the generation was stopped",
                            "relay_shutdown")

    # -- timers ------------------------------------------------------------------------------

    def _orphaned(self, stream_id: str) -> None:
        self._timers.pop(stream_id, None)
        stream = self._streams.get(stream_id)
        if stream is not None and stream.live and not stream.followers:
            stream.end(f"nobody resumed the stream within {self.limits.orphan_timeout:g} s; "
                       "the generation was stopped", "orphaned")

    def _expire(self, stream_id: str) -> None:
        self._timers.pop(stream_id, None)
        if stream_id in self._streams:
            self.stats.expired += 1
            self._forget(stream_id, "the stream expired (--resume-ttl) before this reader had "
                         "all of it", "expired")

    def _forget(self, stream_id: str, message: str, code: str) -> None:
        """Drop an ended stream. Its readers still behind are cut (``message``, ``code``: an
        error event, and a clean end), so that nothing keeps its events once it is no longer
        counted."""
        stream = self._streams.pop(stream_id)
        self._disarm(stream_id)
        self.held -= stream.size
        if stream.followers:
            gone = error_event(message, code)
            for follower in list(stream.followers):
                follower.evict(gone, code)

    def _arm(self, stream_id: str, delay: float, fire: Callable[[str], None]) -> None:
        self._disarm(stream_id)
        self._timers[stream_id] = self.loop.call_later(delay, fire, stream_id)

    def _disarm(self, stream_id: str) -> None:
        timer = self._timers.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
