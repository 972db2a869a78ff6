"""Resumable streams shared by many relay instances through Redis (``--redis``).

A stream's *owner*, the instance with its upstream connection, keeps it in its registry
(:class:`~relay.streams.registry.Streams`, for its own readers), whose store
(:class:`RedisStore`, a :class:`~relay.streams.registry.StreamStore`) copies it to Redis:
``relay:rs:{id}``, a Redis Stream, an entry per event with the event's number as entry id
(``XRANGE key 0-6 +`` is "after event 5"; no ``MAXLEN``: the byte cap stops a stream first),
and ``relay:rs:{id}:meta``, a hash (``owner`` digest, ``status`` ``live`` or how it ended,
``produced``, ``count``, ``tail``), expiring ``orphan_timeout + ttl`` after the last write
while live, ``ttl`` after the end. The upstream's read path never waits: ``write`` marks the
stream dirty; one writer task pipelines what dirty streams lack (``XADD`` per event, meta,
expiry, then a ``PUBLISH`` on topic ``relay:rs:{id}``: a poke, "read me").

Another instance reads through a *mirror*, a local :class:`ResumableStream` without upstream,
read by the usual :class:`~relay.streams.stream.Follower`, whose host is the store (a mirror
tells the store, not the registry, of its readers and its end): its topic is subscribed first
(confirmed), then Redis read (``HGETALL``, then ``XRANGE`` after its last event: the meta never
counts an event not read); a poke reads again (once more if one came meanwhile): nothing lost
or repeated. One mirror per id here, dropped with its last reader. Topic ``relay:rs-control``
tells owners ``follow``/``unfollow`` (a mirror's first and last reader: the orphan timer runs
only while no instance reads) and ``cancel`` (the owner ends it; the cancel waits up to
``CANCEL_WAIT`` for the end, then answers what Redis holds).

Redis away: owners' readers go on from memory; the writer logs once, retries with backoff, then
rewrites all it holds (an ``XADD`` refused as already there is ignored); pub/sub reconnects,
mirrors read again. A find or cancel of a stream held elsewhere raises
:class:`StreamStoreUnavailable` (503: a 404 would say it is gone for good). Control messages
are not queued: a lost ``follow`` may let an owner orphan a stream read elsewhere; an instance
dying with readers never sends ``unfollow`` (that stream then runs to its end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from functools import partial
from typing import Any

from ..config import ResumeLimits
from ..errors import ResumeCapacity, StreamStoreUnavailable
from ..redis_link import RedisLink, settle
from .mirror import Mirror
from .redis_writer import CONTROL, ERRORS, KEY, RedisWriter
from .registry import Streams, resume_event
from .stream import Follower, ResumableStream, error_event

CANCEL_WAIT = 2.0  # seconds a cancel on a mirror waits for the owner's final event
READY_WAIT = 5.0  # seconds to wait for a SUBSCRIBE to be confirmed
_FULL = "this instance's memory for resumable streams is full (--resume-memory)"


def _mirror(stream: ResumableStream) -> Mirror:
    """A stream whose host is the store: always a mirror (the store hosts nothing else)."""
    assert isinstance(stream, Mirror), stream
    return stream


class RedisStore:
    """The registry's store: its streams copied to Redis, and mirrors of other instances'
    (see the module docstring). It is the mirrors' host; the registry hosts the streams
    generated here."""

    shared = True

    def __init__(self, link: RedisLink, streams: Streams, own_link: bool = False) -> None:
        self._registry, self.loop, self.limits = streams, streams.loop, streams.limits
        self._link, self._own_link, self._cmd = link, own_link, link.cmd
        self._mirrors: dict[str, Mirror] = {}
        self._remote: dict[str, int] = {}  # owned stream -> instances reading it elsewhere
        self._subscribed: set[str] = set()  # stream topics SUBSCRIBE-d
        self._sub_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer = RedisWriter(link.cmd, streams)
        self._spawn(self._writer.run())

    @classmethod
    async def connect(cls, link: RedisLink | str, loop: asyncio.AbstractEventLoop,
                      limits: ResumeLimits) -> Streams:
        """A registry with this store (its own link when given a URL)."""
        own = isinstance(link, str)
        link = RedisLink(link, loop) if isinstance(link, str) else link
        streams = Streams(loop, limits, partial(cls, link, own_link=own))
        store = streams.store
        assert isinstance(store, RedisStore)
        link.listen(store, KEY, CONTROL)
        with contextlib.suppress(*ERRORS):  # (connected before the first stream; if Redis
            await asyncio.wait_for(store._cmd.ping(), 1.0)  # is away, the writer retries,
            await asyncio.wait_for(link.connected.wait(), 1.0)  # and so does the link)
        return streams

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)  # (kept: an unreferenced task may be collected)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the registry's store (relay.streams.registry.StreamStore) ---------------------------

    def write(self, stream: ResumableStream, start: int) -> None:
        self._writer.mark(stream.id, start)

    def ended(self, stream: ResumableStream) -> None:
        self._remote.pop(stream.id, None)
        self._writer.mark(stream.id, len(stream.events))

    def read_elsewhere(self, stream: ResumableStream) -> bool:
        return bool(self._remote.get(stream.id))

    # -- the mirrors' host (relay.streams.stream.StreamHost) ---------------------------------

    def hold(self, grown: int) -> None:
        self._registry.hold(grown)  # (a mirror's bytes count against --resume-memory too)

    def has_room(self) -> bool:
        return self._registry.has_room()

    def appended(self, stream: ResumableStream, start: int) -> None:
        """(A mirror is filled by the store itself, which pumps its readers.)"""

    def finished(self, stream: ResumableStream) -> None:
        _mirror(stream).ended.set()  # (not ours: no expiry timer, no live count)

    def followed(self, stream: ResumableStream) -> None:
        mirror = _mirror(stream)
        if mirror.live and not mirror.following:  # one per instance, however many readers
            mirror.following = True
            self._writer.mark(mirror.id, 0, b"follow")

    def unfollowed(self, stream: ResumableStream) -> None:
        self._release(_mirror(stream), 0)

    def draining(self, follower: Follower) -> None:
        """As for a stream generated here: told where to resume, and let go now."""
        follower.tell_to_resume(partial(resume_event, follower.stream))

    def shutting_down(self, follower: Follower) -> None:
        follower.cut()  # (a mirror's generation is not this instance's to end)

    # -- control messages, finds and cancels ---------------------------------------------------

    def _on_control(self, data: bytes) -> None:
        verb, _, raw = data.partition(b" ")
        sid = raw.decode(errors="replace")
        stream = self._registry.get(sid)
        if stream is None or not stream.live:
            return  # (not ours, or over)
        if verb == b"cancel":
            self._spawn(self._registry.cancel(stream))
        elif verb == b"follow":
            self._remote[sid] = self._remote.get(sid, 0) + 1
            self._registry.followed(stream)
        elif verb == b"unfollow":
            self._remote[sid] = left = max(0, self._remote.get(sid, 0) - 1)
            if not left and not stream.followers:
                self._registry.unfollowed(stream)

    async def find(self, stream_id: str) -> ResumableStream | None:
        mirror = self._mirrors.get(stream_id)
        if mirror is None:
            if not self._registry.has_room():
                raise ResumeCapacity(_FULL + "; retry later")
            mirror = self._mirrors[stream_id] = Mirror(stream_id, self)
            self._spawn(self._build(mirror))  # (a task: every find shares it)
        mirror.holds += 1
        try:
            error = await asyncio.shield(mirror.built)
        finally:  # (soon: the caller adds its follower first, in this same step)
            self.loop.call_soon(self._release, mirror)
        if mirror.full:
            raise ResumeCapacity(_FULL + "; retry later")
        if error is not None:
            raise StreamStoreUnavailable(error)
        return mirror if mirror.found else None

    async def cancel(self, stream: ResumableStream) -> None:
        stream = _mirror(stream)  # (live: the registry cancels its own, and ended ones stay)
        stream.holds += 1
        try:
            self._writer.mark(stream.id, 0, b"cancel")  # (to the owner; its end comes back here)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.ended.wait(), CANCEL_WAIT)
            error = await self._sync(stream) if stream.live else None
        finally:
            self._release(stream)
        if error is not None:
            raise StreamStoreUnavailable(error)

    async def _build(self, mirror: Mirror) -> None:
        """Subscribe, then read Redis: the order that loses nothing (an unknown id costs a
        SUBSCRIBE and an UNSUBSCRIBE: it keeps one path for every case)."""
        error = None
        try:
            self._spawn(self._reconcile(mirror.id))
            await asyncio.wait_for(mirror.ready, READY_WAIT)
            error = await self._sync(mirror)
        except ERRORS as exc:
            error = f"the stream store (Redis) is unavailable: {exc}"
        finally:  # (also on a bug: every find gets an answer)
            mirror.found = mirror.found and error is None
            mirror.built.set_result(error)
            self._release(mirror, 0)  # (dropped now if no find waits any more)

    async def _sync(self, mirror: Mirror) -> str | None:
        """Read Redis after the mirror's last event, again if pokes came meanwhile."""
        mirror.syncing = True
        try:
            while True:
                mirror.again = False
                key = KEY + mirror.id
                async with self._cmd.pipeline(transaction=False) as pipe:
                    pipe.hgetall(key + ":meta")  # first: it counts what XRANGE sees
                    pipe.xrange(key, f"0-{len(mirror.events) + 1}", "+")
                    meta, entries = await pipe.execute()
                self._apply(mirror, meta, entries)
                if not mirror.again or not mirror.found or not mirror.live:
                    return None
        except ERRORS as exc:  # (for a catch-up: the pub/sub reconnect comes back to it)
            return f"the stream store (Redis) is unavailable: {exc}"
        finally:
            mirror.syncing = False

    def _apply(self, mirror: Mirror, meta: dict[bytes, bytes],
               entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if not mirror.found and meta:
            owner = meta.get(b"owner", b"").decode()
            mirror.owner, mirror.found = bytes.fromhex(owner) if owner else None, True
        if not mirror.found or not mirror.live or self._mirrors.get(mirror.id) is not mirror:
            return  # (a dropped mirror, read by a last sync or a cancel: nothing is counted)
        size = mirror.size
        for entry_id, fields in entries:
            if int(entry_id.partition(b"-")[2]) == len(mirror.events) + 1:
                mirror.events.append(fields[b"e"])
                size += len(fields[b"e"])
        mirror.produced = len(mirror.events)
        status = meta.get(b"status", b"expired").decode()
        done = status != "live" and len(mirror.events) >= int(meta.get(b"count", 0))
        if done:
            mirror.produced, mirror.tail = int(meta.get(b"produced", 0)), meta.get(b"tail", b"")
            size += len(mirror.tail)
        mirror._hold(size)  # (a mirror's bytes count against --resume-memory as a stream's)
        if not self.has_room() or mirror.full:  # (others went first; perhaps this one too)
            self._evict_mirror(mirror)
        elif done:
            mirror.finish(status)  # (pumps its followers to the end)
        else:
            mirror._pump()  # (its followers write what is new)

    def make_room(self) -> bool:
        """After the registry's ended streams, copies go before a generation here is stopped:
        ended ones first, then live ones (they can be read from Redis again, a generation
        cannot)."""
        for mirror in sorted(self._mirrors.values(), key=lambda m: m.live):
            self._evict_mirror(mirror)
            if self._registry.held < self.limits.memory:
                return True
        return False

    def _evict_mirror(self, mirror: Mirror) -> None:
        """This instance's memory for streams is full: a mirror is let go now (its readers told
        so; the stream lives on in Redis and can be resumed later)."""
        mirror.found, mirror.full = False, True  # (not read again; a find makes a new one)
        gone = error_event(_FULL + "; resume later", "evicted", "server_error")
        for follower in list(mirror.followers):
            follower.evict(gone, "evicted")
        if self._mirrors.get(mirror.id) is mirror:
            del self._mirrors[mirror.id]
            self._spawn(self._reconcile(mirror.id))
        mirror._hold(0)

    def _on_notice(self, sid: str) -> None:
        """The stream changed in Redis: read it (or, while reading, read once more)."""
        mirror = self._mirrors.get(sid)
        if mirror is not None and mirror.syncing:
            mirror.again = True
        elif mirror is not None and mirror.found and mirror.live:
            mirror.syncing = True
            self._spawn(self._sync(mirror))

    def _release(self, mirror: Mirror, hold: int = 1) -> None:
        mirror.holds -= hold
        if mirror.holds > 0 or mirror.followers:
            return
        if mirror.following:
            mirror.following = False
            self._writer.mark(mirror.id, 0, b"unfollow")
        if mirror.built.done() and self._mirrors.get(mirror.id) is mirror:  # (else: its build)
            del self._mirrors[mirror.id]
            mirror._hold(0)
            self._spawn(self._reconcile(mirror.id))

    async def _reconcile(self, sid: str) -> None:
        """(UN)SUBSCRIBE as a mirror exists, one at a time: a late UNSUBSCRIBE undoes nothing."""
        async with self._sub_lock:
            mirror = self._mirrors.get(sid)
            try:
                if mirror is not None and sid not in self._subscribed:
                    self._subscribed.add(sid)
                    await self._link.subscribe(KEY + sid)  # (confirmed: ``ready``)
                elif mirror is not None and not mirror.ready.done():
                    mirror.ready.set_result(None)  # (subscribed already)
                elif mirror is None and sid in self._subscribed:
                    self._subscribed.discard(sid)
                    await self._link.unsubscribe(KEY + sid)
            except Exception as exc:  # (a dead connection: the link reconnects, subscribes)
                if mirror is not None and not mirror.ready.done():
                    mirror.ready.set_exception(ConnectionError(f"Redis pub/sub: {exc}"))

    # -- the link's listener ------------------------------------------------------------------

    def topics(self) -> list[str]:
        """On a (re)connect: every mirror's topic, and the owners' control topic."""
        self._subscribed = set(self._mirrors)
        return [CONTROL, *(KEY + sid for sid in self._subscribed)]

    async def on_connected(self) -> None:
        for sid in list(self._mirrors):  # (notices may have been lost meanwhile)
            self._on_notice(sid)

    def on_lost(self) -> None:
        """Owners' readers go on from memory; mirrors read again once the link is back."""

    def on_message(self, topic: str, kind: str, data: Any) -> None:
        if topic == CONTROL and kind == "message":
            self._on_control(data)
        elif topic.startswith(KEY) and kind == "message":
            self._on_notice(topic[len(KEY):])
        elif topic.startswith(KEY) and kind == "subscribe":
            mirror = self._mirrors.get(topic[len(KEY):])
            if mirror is not None and not mirror.ready.done():
                mirror.ready.set_result(None)

    async def close(self) -> None:
        """Let the writer send what is left (the streams' ends), bounded; then stop, bounded
        whatever Redis does (:func:`~relay.redis_link.settle`)."""
        await self._writer.stop()
        for task in list(self._tasks):
            task.cancel()
        await settle(*self._tasks)
        if self._own_link:
            await self._link.close()
