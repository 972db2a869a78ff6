"""Resumable streams shared by many relay instances through Redis (``--redis``).

A stream's *owner*, the instance with its upstream connection, keeps it in memory as
:class:`~relay.streams.registry.Streams` does (for its own readers) and copies it to Redis:
``relay:rs:{id}``, a Redis Stream, an entry per event with the event's number as entry id
(``XRANGE key 0-6 +`` is "after event 5"; no ``MAXLEN``: the byte cap stops a stream first),
and ``relay:rs:{id}:meta``, a hash (``owner`` digest, ``status`` ``live`` or how it ended,
``produced``, ``count``, ``tail``), expiring ``orphan_timeout + ttl`` after the last write
while live, ``ttl`` after the end. The upstream's read path never waits: ``appended`` marks the
stream dirty; one writer task pipelines what dirty streams lack (``XADD`` per event, meta,
expiry, then a ``PUBLISH`` on topic ``relay:rs:{id}``: a poke, "read me").

Another instance reads through a *mirror*, a local :class:`ResumableStream` without upstream,
read by the usual :class:`~relay.streams.stream.Follower`: its topic is subscribed first
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
import logging
from collections.abc import Coroutine
from typing import Any

from redis.exceptions import RedisError

from ..config import ResumeLimits
from ..errors import ResumeCapacity, StreamStoreUnavailable
from ..redis_link import RedisLink, settle
from .mirror import Mirror
from .registry import Streams
from .stream import Follower, ResumableStream, error_event

log = logging.getLogger("relay.redis")

KEY, CONTROL = "relay:rs:", "relay:rs-control"
CANCEL_WAIT = 2.0  # seconds a cancel on a mirror waits for the owner's final event
READY_WAIT = 5.0  # seconds to wait for a SUBSCRIBE to be confirmed
_FULL = "this instance's memory for resumable streams is full (--resume-memory)"
_ERRORS = (RedisError, OSError, TimeoutError)


class RedisStreams(Streams):
    """Streams in memory here, copied to Redis for every instance (see the module docstring)."""

    shared = True

    def __init__(self, link: RedisLink, loop: asyncio.AbstractEventLoop, limits: ResumeLimits,
                 own_link: bool = False) -> None:
        super().__init__(loop, limits)
        self._link, self._own_link, self._cmd = link, own_link, link.cmd
        self._mirrors: dict[str, Mirror] = {}
        self._remote: dict[str, int] = {}  # owned stream -> instances reading it elsewhere
        self._dirty: dict[str, int] = {}  # owned stream -> first event Redis lacks
        self._control: list[bytes] = []  # control messages for the next write
        self._wake, self._quiet = asyncio.Event(), asyncio.Event()
        self._subscribed: set[str] = set()  # stream topics SUBSCRIBE-d
        self._sub_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._spawn(self._write_forever())

    @classmethod
    async def connect(cls, link: RedisLink | str, loop: asyncio.AbstractEventLoop,
                      limits: ResumeLimits) -> RedisStreams:
        own = isinstance(link, str)
        store = cls(RedisLink(link, loop) if isinstance(link, str) else link, loop, limits, own)
        store._link.listen(store, KEY, CONTROL)
        with contextlib.suppress(*_ERRORS):  # (connected before the first stream; if Redis
            await asyncio.wait_for(store._cmd.ping(), 1.0)  # is away, the writer retries,
            await asyncio.wait_for(store._link.connected.wait(), 1.0)  # and so does the link)
        return store

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)  # (kept: an unreferenced task may be collected)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _started(self, stream: ResumableStream) -> None:
        self._mark(stream.id, 0)

    def appended(self, stream: ResumableStream, start: int) -> None:
        super().appended(stream, start)
        self._mark(stream.id, start)

    def _mark(self, stream_id: str, start: int, control: bytes = b"") -> None:
        if control:
            self._control.append(control + b" " + stream_id.encode())
        else:
            self._dirty.setdefault(stream_id, start)  # (the earliest still unwritten)
        self._quiet.clear()
        self._wake.set()

    async def _write_forever(self) -> None:
        backoff = 0.0  # (not 0: failing)
        while not self._closing:  # (checked too: a cancel absorbed by redis-py ends it here)
            if not self._dirty and not self._control:
                self._quiet.set()
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
                backoff = 0.0
            except _ERRORS as exc:
                if not backoff:
                    log.warning("Redis writes of resumable streams failed (%s); retrying", exc)
                backoff = min(max(backoff * 2, 0.1), 2.0)
                self._dirty = dict.fromkeys(self._streams, 0)  # (Redis may have lost all)
                await asyncio.sleep(backoff)
                self._wake.set()

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        control, self._control = self._control, []
        async with self._cmd.pipeline(transaction=False) as pipe:
            for sid, start in dirty.items():
                if sid in self._streams:  # (else forgotten meanwhile: its keys expire)
                    self._queue(pipe, self._streams[sid], start)
            for message in control:
                pipe.publish(CONTROL, message)
            results = await pipe.execute(raise_on_error=False) if len(pipe) else []
        for result in results:  # (an XADD refused as already there is a rewrite: fine)
            if isinstance(result, Exception) and "equal or smaller" not in str(result):
                raise result

    def _queue(self, pipe: Any, stream: ResumableStream, start: int) -> None:
        """Queue the events of ``stream`` from ``start`` on, its meta and its expiry."""
        key, events = KEY + stream.id, stream.events
        for seq in range(start + 1, len(events) + 1):
            pipe.xadd(key, {"e": events[seq - 1]}, id=f"0-{seq}")
        pipe.hset(key + ":meta", mapping={
            "owner": stream.owner.hex() if stream.owner else "", "status": stream.status or
            "live", "produced": stream.produced, "count": len(events), "tail": stream.tail})
        ttl = self.limits.ttl + (self.limits.orphan_timeout if stream.live else 0)
        pipe.pexpire(key, int(ttl * 1000))
        pipe.pexpire(key + ":meta", int(ttl * 1000))
        pipe.publish(key, b"%d" % len(events))  # (last: a mirror poked reads all of it)

    def finished(self, stream: ResumableStream) -> None:
        if isinstance(stream, Mirror):  # not ours: no expiry timer, no live count
            stream.ended.set()
        elif self._streams.get(stream.id) is stream:
            super().finished(stream)
            self._remote.pop(stream.id, None)
            self._mark(stream.id, len(stream.events))

    def followed(self, stream: ResumableStream) -> None:
        if not isinstance(stream, Mirror):
            super().followed(stream)
        elif stream.live and not stream.following:  # one per instance, however many readers
            stream.following = True
            self._mark(stream.id, 0, b"follow")

    def unfollowed(self, stream: ResumableStream) -> None:
        if isinstance(stream, Mirror):
            self._release(stream, 0)
        elif not self._remote.get(stream.id):  # (read elsewhere: no orphan timer)
            super().unfollowed(stream)

    def shutting_down(self, follower: Follower) -> None:
        if isinstance(follower.stream, Mirror):
            follower.cut()  # (a mirror's generation is not this instance's to end)
        else:
            super().shutting_down(follower)

    def _on_control(self, data: bytes) -> None:
        verb, _, raw = data.partition(b" ")
        sid = raw.decode(errors="replace")
        stream = self._streams.get(sid)
        if stream is None or not stream.live:
            return  # (not ours, or over)
        if verb == b"cancel":
            self._spawn(super().cancel(stream))
        elif verb == b"follow":
            self._remote[sid] = self._remote.get(sid, 0) + 1
            self._disarm(sid)
        elif verb == b"unfollow":
            self._remote[sid] = left = max(0, self._remote.get(sid, 0) - 1)
            if not left and not stream.followers:
                self._arm(sid, self.limits.orphan_timeout, self._orphaned)

    async def find(self, stream_id: str) -> ResumableStream | None:
        if stream_id in self._streams:
            return self._streams[stream_id]
        mirror = self._mirrors.get(stream_id)
        if mirror is None:
            if not self.has_room():
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
        if not isinstance(stream, Mirror) or not stream.live:
            await super().cancel(stream)  # (ours, or over: as it ended)
            return
        stream.holds += 1
        try:
            self._mark(stream.id, 0, b"cancel")  # (to the owner; its end comes back here)
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
        except _ERRORS as exc:
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
        except _ERRORS as exc:  # (for a catch-up: the pub/sub reconnect comes back to it)
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

    def has_room(self) -> bool:
        """As for streams here, then copies go before a generation here is stopped: ended
        ones first, then live ones (they can be read from Redis again, a generation cannot)."""
        if super().has_room():
            return True
        for mirror in sorted(self._mirrors.values(), key=lambda m: m.live):
            self._evict_mirror(mirror)
            if self.held < self.limits.memory:
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
            self._mark(mirror.id, 0, b"unfollow")
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
        await settle(self._quiet.wait())
        self._closing = True
        self._wake.set()  # (a writer between two flushes ends now)
        for task in list(self._tasks):
            task.cancel()
        await settle(*self._tasks)
        if self._own_link:
            await self._link.close()
        await super().close()
