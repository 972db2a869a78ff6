"""Channels shared by many relay instances through Redis (``--redis``, the ``relay[redis]`` extra).

It uses the instance's two Redis connections (:class:`relay.redis_link.RedisLink`, shared
with resumable streams), whatever its number of subscribers:

* the **command** connection: a publish is one Lua script that appends the event to the
  channel's Stream and ``PUBLISH``-es it with its id, atomically; replays are ``XRANGE``;
* the **pub/sub** connection, subscribed to the channels that have subscribers on this instance
  (one ``SUBSCRIBE`` per channel, however many local subscribers; ``UNSUBSCRIBE`` when the last
  leaves).

The script keeps Redis within the same bounds as memory (:mod:`.history`), counting an entry as
its id, name and data: it drops a channel's oldest entries past ``--channel-history`` events,
``--channel-history-bytes`` or the time-to-live (exactly: one ``XRANGE ... COUNT 1`` and
``XDEL`` per entry dropped, amortised one per publish); it keeps the channels in a sorted set
by last publish (``relay:channels``) and their bytes in a hash (``relay:channels:bytes``, ``*``
for all), drops the least recently published past ``--max-channels`` and the oldest entries of
the least recent past ``--channels-memory``; every key but the last id expires after the ttl of
quiet. Ids are given from one key for all channels (``relay:channels:last-id``), so none
repeats, even on a channel evicted and published to again in one millisecond. The Stream's ids
are the events' ids, the same on every instance, so a client can replay on any of them; a
position the Stream does not hold gives a reset, then everything it holds; ``0-0`` gives
everything it holds, with a reset only when the channel lost entries (``relay:channels:lost``).

A new subscriber is registered, its channel subscribed (confirmed), and only then
replayed: no event falls between the replay and the live stream.

When Redis goes away, publishes get 503 (:class:`BrokerUnavailable`), never a silent loss;
subscribers stay connected (heartbeats go on); the reader reconnects with backoff, subscribes
again, and reads each channel's Stream from the last event it delivered, so what was published
since Redis came back reaches everyone with no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError

from ..config import ChannelLimits
from ..redis_link import RedisLink
from .broker import BrokerUnavailable
from .events import START, ChannelEvent, EventKey, format_id, parse_id
from .history import Replay
from .hub import Hub

STREAM, TOPIC = "relay:stream:", "relay:ch:"
CHANNELS = "relay:channels"  # sorted set: channel -> its last publish (ms), least recent first
HELD = "relay:channels:bytes"  # hash: channel -> bytes its Stream holds; "*" -> all of them
IDS = "relay:channels:last-id"  # the last id given to any channel (never expires)
# hash: channel -> 1 once an entry of it was dropped (a replay from 0-0 is partial); "*" -> 1
# once a whole channel was, and a channel made after that is marked too (it may be that one)
LOST = "relay:channels:lost"
# KEYS: the Stream, the pub/sub topic, CHANNELS, HELD, IDS, LOST. ARGV: history length, history
# bytes, all channels' bytes, max channels, ttl in ms, the Stream prefix; the channel, the event
# name, the data. An entry's bytes: its id, name and data (what the caps count).
_PUBLISH = """
local stream, channels, held, ids, lost = KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local history, cap, memory = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_channels, ttl, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local channel, name, data = ARGV[7], ARGV[8], ARGV[9]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - ttl

local function first(key)  -- the oldest entry of a Stream, or nil
  return redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
end
local function drop_entry(ch, key, entry)
  local freed = #entry[1] + #entry[2][2] + #entry[2][4]
  redis.call('XDEL', key, entry[1])
  redis.call('HSET', lost, ch, 1)
  redis.call('HINCRBY', held, ch, -freed)
  redis.call('HINCRBY', held, '*', -freed)
end
local function drop_channel(ch)
  redis.call('HINCRBY', held, '*', -tonumber(redis.call('HGET', held, ch) or '0'))
  redis.call('HDEL', held, ch)
  redis.call('HDEL', lost, ch)
  redis.call('HSET', lost, '*', 1)
  redis.call('ZREM', channels, ch)
  redis.call('DEL', prefix .. ch)
end

-- The id: past the last one given to any channel, so none repeats, even on a channel evicted
-- and published to again in the same millisecond.
local ms, seq = now, 0
local last = redis.call('GET', ids)
if last then
  local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
  if lms and ms <= tonumber(lms) then ms, seq = tonumber(lms), tonumber(lseq) + 1 end
end
local fresh = redis.call('EXISTS', stream) == 0
local id = redis.pcall('XADD', stream, string.format('%d-%d', ms, seq), 'e', name, 'd', data)
if type(id) == 'table' then  -- (a Stream already past it: Redis picks the next id)
  id = redis.call('XADD', stream, '*', 'e', name, 'd', data)
end
redis.call('SET', ids, id)
if fresh and redis.call('HEXISTS', lost, '*') == 1 then redis.call('HSET', lost, channel, 1) end
local size = #id + #name + #data
redis.call('HINCRBY', held, channel, size)
redis.call('HINCRBY', held, '*', size)
redis.call('ZADD', channels, now, channel)

-- This channel: at most `history` events and `cap` bytes, none older than the ttl.
while true do
  local entry = first(stream)
  if not entry then break end
  if redis.call('XLEN', stream) <= history and tonumber(redis.call('HGET', held, channel)) <= cap
     and tonumber(string.match(entry[1], '^%d+')) >= cutoff then break end
  drop_entry(channel, stream, entry)
end
-- Channels idle past the ttl (their Streams expire): their bytes are given back.
local idle = string.format('(%d', cutoff)
for _, ch in ipairs(redis.call('ZRANGEBYSCORE', channels, '-inf', idle, 'LIMIT', 0, 16)) do
  drop_channel(ch)
end
-- At most `max_channels` channels: the least recently published to goes first.
while redis.call('ZCARD', channels) > max_channels do
  local oldest = redis.call('ZRANGE', channels, 0, 1)
  drop_channel((oldest[1] == channel and oldest[2]) or oldest[1])
end
-- All channels: at most `memory` bytes, the oldest events of the least recent channel first.
while tonumber(redis.call('HGET', held, '*')) > memory do
  local ch = redis.call('ZRANGE', channels, 0, 0)[1]
  if not ch then redis.call('HSET', held, '*', 0) break end
  local entry = first(prefix .. ch)
  if entry then drop_entry(ch, prefix .. ch, entry) end
  if not entry or not first(prefix .. ch) then drop_channel(ch) end
end
redis.call('PEXPIRE', stream, ttl)
redis.call('PEXPIRE', channels, ttl)
redis.call('PEXPIRE', held, ttl)
redis.call('PEXPIRE', lost, ttl)
return {id, redis.call('PUBLISH', KEYS[2], id .. '\\n' .. name .. '\\n' .. data)}
"""


def _event(entry_id: Any, fields: Any) -> ChannelEvent | None:
    """A Stream entry as an event (entries come as bytes: no decode_responses)."""
    key = parse_id(entry_id.decode()) if isinstance(entry_id, bytes) else None
    if key is None or not isinstance(fields, dict):
        return None
    name = fields.get(b"e", b"").decode()
    return ChannelEvent(key, fields.get(b"d", b"").decode(), name or None)


class RedisBroker:
    """Channels in Redis Streams, delivered through pub/sub (see the module docstring)."""

    synchronous = False

    def __init__(self, link: RedisLink, loop: asyncio.AbstractEventLoop,
                 limits: ChannelLimits, own_link: bool = False) -> None:
        self._link, self._own_link = link, own_link
        self._loop, self._limits = loop, limits
        self._cmd = link.cmd
        self._script = self._cmd.register_script(_PUBLISH)
        lim = limits
        self._bounds: list[int | str] = [lim.history, lim.history_bytes, lim.memory,
                                         lim.max_channels, int(lim.ttl * 1000), STREAM]
        self.hub = Hub(loop, limits, on_first=self._watch, on_last=self._unwatch)
        self._ready: dict[str, asyncio.Future[None]] = {}  # channel -> SUBSCRIBE confirmed
        self._last: dict[str, EventKey] = {}  # the newest event delivered here, per channel
        self._reading: dict[str, asyncio.Future[None]] = {}  # see _where_it_stands

    @classmethod
    async def connect(cls, link: RedisLink | str, loop: asyncio.AbstractEventLoop,
                      limits: ChannelLimits) -> RedisBroker:
        own = isinstance(link, str)
        broker = cls(RedisLink(link, loop) if isinstance(link, str) else link, loop, limits,
                     own)
        broker._link.listen(broker, TOPIC)
        return broker

    # -- publish and replay (the command connection) -------------------------------------------

    def publish_now(self, channel: str, data: str, event: str | None) -> None:
        return None  # every publish goes through Redis

    async def publish(self, channel: str, data: str, event: str | None) -> tuple[ChannelEvent, int]:
        try:
            entry_id, _instances = await self._script(
                keys=[STREAM + channel, TOPIC + channel, CHANNELS, HELD, IDS, LOST],
                args=[*self._bounds, channel, event or "", data])
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the channel store (Redis) is unavailable: {exc}") from None
        key = parse_id(entry_id.decode())
        assert key is not None
        return ChannelEvent(key, data, event), self.hub.count(channel)

    async def replay(self, channel: str, after: EventKey | None, given: bool) -> Replay:
        ready = self._ready.get(channel)
        if ready is not None:  # live events flow before the history is read: no gap
            await asyncio.wait_for(asyncio.shield(ready), 5)
        if not given:  # no position asked: only where the channel stands, read once for all
            if channel in self._last:
                return Replay([], False, None)
            return await self._where_it_stands(channel)
        stream = STREAM + channel
        try:
            async with self._cmd.pipeline(transaction=False) as pipe:
                pipe.xrange(stream, "-", "+", count=1)
                pipe.xrevrange(stream, "+", "-", count=1)
                if after == START:  # from the beginning: what was dropped, then all of it
                    pipe.hmget(LOST, channel, "*")
                    pipe.xrange(stream, "-", "+")
                elif after is not None:
                    pipe.xrange(stream, format_id(after), format_id(after), count=1)
                    pipe.xrange(stream, "(" + format_id(after), "+")
                else:
                    pipe.xrange(stream, "-", "+")
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the channel store (Redis) is unavailable: {exc}") from None
        oldest = results[0][0][0].decode() if results[0] else None
        newest = parse_id(results[1][0][0].decode()) if results[1] else None
        if newest is not None:  # what this instance has seen: the catch-up after a reconnect
            self._last.setdefault(channel, newest)  # starts past it
        entries = results[-1]
        if after == START:  # (a channel with nothing held may be one that was dropped)
            mine, any_dropped = results[2]
            found = not (mine or (not entries and any_dropped))
        else:
            found = after is not None and bool(results[2])
            if after is not None and not found:  # a reset: then everything held, as in memory
                entries = await self._read_all(stream)
        events = [e for e in (_event(i, f) for i, f in entries) if e is not None]
        return Replay(events, not found, oldest)

    async def _read_all(self, stream: str) -> Any:
        try:
            return await self._cmd.xrange(stream, "-", "+")
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the channel store (Redis) is unavailable: {exc}") from None

    async def _where_it_stands(self, channel: str) -> Replay:
        """The channel's newest event, so catch-ups after a reconnect start past it: one read
        shared by every subscriber that joins meanwhile. (10,000 joining at once had each
        queued for the one command connection: those still waiting after its 5 s were
        closed without an event.)"""
        pending = self._reading.get(channel)
        if pending is None:
            pending = self._reading[channel] = asyncio.ensure_future(self._read_newest(channel))
            pending.add_done_callback(lambda _: self._reading.pop(channel, None))
        await asyncio.shield(pending)  # (one subscriber leaving does not cancel the read)
        return Replay([], False, None)

    async def _read_newest(self, channel: str) -> None:
        try:
            newest: Any = await self._cmd.xrevrange(STREAM + channel, "+", "-", count=1)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the channel store (Redis) is unavailable: {exc}") from None
        if newest:
            key = parse_id(newest[0][0].decode())
            if key is not None:
                self._last.setdefault(channel, key)

    # -- live events (the pub/sub connection) -----------------------------------------------------

    def _watch(self, channel: str) -> None:
        """The first local subscriber of ``channel``: SUBSCRIBE (confirmed by the reader)."""
        self._ready[channel] = self._loop.create_future()
        if self._link.connected.is_set():
            self._loop.create_task(self._subscribe(channel))

    def _unwatch(self, channel: str) -> None:
        ready = self._ready.pop(channel, None)
        if ready is not None and not ready.done():
            ready.cancel()
        self._last.pop(channel, None)
        if self._link.connected.is_set():
            self._loop.create_task(self._unsubscribe(channel))

    async def _subscribe(self, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):  # (the reader notices a dead connection)
            await self._link.subscribe(TOPIC + channel)

    async def _unsubscribe(self, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._link.unsubscribe(TOPIC + channel)

    # -- the link's listener ------------------------------------------------------------------

    def topics(self) -> list[str]:
        return [TOPIC + c for c in self._ready]

    async def on_connected(self) -> None:
        """Subscribed again (after a reconnect): catch each channel up from its Stream."""
        with contextlib.suppress(RedisError, OSError):  # (lost again: the next connect retries)
            await self._catch_up()

    def on_lost(self) -> None:
        """Subscribers stay connected (heartbeats go on) until the link is back."""

    async def _catch_up(self) -> None:
        """Deliver what each channel's Stream holds past the last event delivered here."""
        for channel in list(self._ready):
            last = self._last.get(channel)
            start = "-" if last is None else "(" + format_id(last)
            entries = await self._cmd.xrange(STREAM + channel, start, "+")
            for entry_id, fields in entries or ():
                event = _event(entry_id, fields)
                if event is not None:
                    self._deliver(channel, event)

    def on_message(self, topic: str, kind: str, data: Any) -> None:
        channel = topic[len(TOPIC):]
        if kind == "subscribe":
            ready = self._ready.get(channel)
            if ready is not None and not ready.done():
                ready.set_result(None)
        elif kind == "message":
            entry_id, event_name, text = data.decode().split("\n", 2)
            key = parse_id(entry_id)
            if key is not None:
                self._deliver(channel, ChannelEvent(key, text, event_name or None))

    def _deliver(self, channel: str, event: ChannelEvent) -> None:
        last = self._last.get(channel)
        if last is not None and event.key <= last:
            return  # (caught up already)
        self._last[channel] = event.key
        self.hub.deliver(channel, event)

    @property
    def held(self) -> int:
        return 0  # (Redis holds the histories)

    async def close(self) -> None:
        self.hub.close()
        if self._own_link:
            await self._link.close()
