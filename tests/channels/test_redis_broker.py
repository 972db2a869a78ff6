"""Channels shared through a real redis-server: two relay processes, replay across them, Redis
going away and coming back under connected subscribers, and two connections per instance."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import redis

from relay.channels.redis_broker import RedisBroker
from relay.config import MIB, ChannelLimits
from relay.redis_link import RedisLink

from ..support import EventStream, H11Client, connect, publish, wait_until
from ..support.processes import spawn
from ..support.redis_server import CLOSE_BOUND, RedisServer
from .test_broker import FROM_THE_START, from_the_start_resets_only_what_lost_events


@contextmanager
def _relays(redis: RedisServer, n: int, *extra: str) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            _proc, port, _ = stack.enter_context(spawn(
                "serve", "--port", "0", "--redis", redis.url, "--access-log", "off", *extra))
            ports.append(port)
        yield ports


def _ids_of(stream: EventStream) -> list[str]:
    return [e.data for e in stream.events if e.event != "relay.reset"]


def test_a_publish_on_one_instance_reaches_subscribers_on_both(
        redis_server: RedisServer) -> None:
    with _relays(redis_server, 2) as (a, b):
        on_a, on_b = EventStream(a, b"/events/room"), EventStream(b, b"/events/room")
        assert wait_until(lambda: len(redis_server.client().pubsub_channels("relay:ch:*")) == 1)
        ids = [json.loads(publish(a if i % 2 else b, "room", f"m{i}").body)["id"]
               for i in range(6)]
        for stream in (on_a, on_b):
            stream.read(6)
            assert _ids_of(stream) == [f"m{i}" for i in range(6)]
            assert [e.id for e in stream.events] == ids  # the same ids everywhere


def test_replay_on_another_instance(redis_server: RedisServer) -> None:
    with _relays(redis_server, 2) as (a, b):
        ids = [json.loads(publish(a, "log", f"e{i}").body)["id"] for i in range(5)]
        late = EventStream(b, b"/events/log", [(b"last-event-id", ids[1].encode())])
        late.read(3)
        assert _ids_of(late) == ["e2", "e3", "e4"] and late.events[0].id == ids[2]
        lost = EventStream(b, b"/events/log?last_event_id=1-0")  # not held: reset, then all
        lost.read(6)
        assert lost.events[0].event == "relay.reset" and _ids_of(lost) == [
            f"e{i}" for i in range(5)]


def test_redis_going_away_and_coming_back_under_subscribers(redis_server: RedisServer) -> None:
    """Publishes get 503 while Redis is down; subscribers stay connected (and keep getting
    heartbeats); when Redis is back, what is published reaches them all, with no gap."""
    with _relays(redis_server, 2, "--heartbeat", "0.5") as (a, b):
        streams = [EventStream(port, b"/events/up") for port in (a, b, a)]
        assert json.loads(publish(a, "up", "before").body)["subscribers"] == 2
        for stream in streams:
            stream.read(1)
        redis_server.stop()
        down = publish(b, "up", "lost?")
        assert down.status == 503 and down.headers[b"retry-after"] == b"1"
        beats = [s.payload.count(b": heartbeat") for s in streams]
        for stream, seen in zip(streams, beats, strict=True):  # still connected
            stream.read(until=lambda s, seen=seen: s.payload.count(b": heartbeat") > seen)
        redis_server.start()  # an empty Redis (no persistence), on the same port
        sent = []
        deadline = time.monotonic() + 20
        while len(sent) < 5 and time.monotonic() < deadline:  # at once, as Redis comes back
            reply = publish(a if len(sent) % 2 else b, "up", f"after{len(sent)}")
            if reply.status == 200:
                sent.append(f"after{len(sent)}")
        assert len(sent) == 5
        for stream in streams:
            stream.read(6)
            assert _ids_of(stream) == ["before", *sent]


def test_two_redis_connections_per_instance_whatever_the_subscribers(
        redis_server: RedisServer) -> None:
    with _relays(redis_server, 1) as (port,):
        streams = [EventStream(port, f"/events/c{i % 50}".encode()) for i in range(1000)]
        subscribed = redis_server.client().pubsub_channels
        assert wait_until(lambda: len(subscribed("relay:ch:*")) == 50, 10)
        assert list(redis_server.relay_connections().values()) == [2]
        publish(port, "c7", "to twenty")
        for stream in streams[7::50]:
            stream.read(1)
        assert list(redis_server.relay_connections().values()) == [2]


def test_subscribers_joining_at_once_share_one_read_and_all_get_the_next_event(
        redis_server: RedisServer) -> None:
    """500 fresh subscribers (no Last-Event-ID) of one channel need only where the channel
    stands: one read for all of them, not one each queued on the one command connection
    (10,000 at once had the late ones closed after its 5 s wait, without an event)."""
    with _relays(redis_server, 1) as (port,):
        publish(port, "crowd", "before")  # the channel has a history to read
        client = redis_server.client()
        client.config_resetstat()
        streams = [EventStream(port, b"/events/crowd") for _ in range(500)]
        publish(port, "crowd", "after")
        for stream in streams:
            stream.read(1)
            assert _ids_of(stream) == ["after"] and not stream.ended
        stats = client.info("commandstats")
        reads = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("xrange",
                                                                              "xrevrange"))
        assert reads <= 5, stats  # (one per batch that joined while no read was under way)


def test_joining_on_another_instance_while_events_flow_loses_and_repeats_nothing(
        redis_server: RedisServer) -> None:
    """A publisher on A keeps publishing while subscribers join on B at a position: each gets
    every event after its position once, in order (registered live before the replay)."""
    with _relays(redis_server, 2) as (a, b):
        first = json.loads(publish(a, "flow", 0).body)["id"]
        done = threading.Event()

        def publisher() -> None:
            for i in range(1, 150):
                publish(a, "flow", i)
            done.set()

        thread = threading.Thread(target=publisher)
        thread.start()
        joiners = [EventStream(b, b"/events/flow", [(b"last-event-id", first.encode())])
                   for _ in range(8)]
        thread.join(60)
        for stream in joiners:
            stream.read(149)
            assert [int(e.data) for e in stream.events] == list(range(1, 150))


def _held_entries(client: redis.Redis) -> dict[str, list[tuple[bytes, dict[bytes, bytes]]]]:
    return {key.decode(): client.xrange(key) for key in client.keys("relay:stream:*")}


def test_redis_holds_at_most_the_channel_caps(redis_server: RedisServer) -> None:
    """Redis keeps what memory would: one channel's Stream at most --channel-history-bytes
    (4 MiB: 100 events of ~64 KiB were all kept), at most --max-channels Streams (every
    channel published to was kept), each key expiring with --channel-ttl."""
    client = redis_server.client()
    with _relays(redis_server, 1, "--max-channels", "3", "--channel-ttl", "30") as (port,):
        for _ in range(100):
            assert publish(port, "big", "x" * (64 * 1024 - 64)).status == 200
        [entries] = _held_entries(client).values()
        held = sum(len(i) + len(f[b"e"]) + len(f[b"d"]) for i, f in entries)
        assert 4 * MIB - 64 * 1024 < held <= 4 * MIB
        assert held == int(client.hget("relay:channels:bytes", "big") or 0)
        for i in range(6):
            assert publish(port, f"c{i}", f"e{i}").status == 200
        streams = _held_entries(client)
        assert sorted(streams) == ["relay:stream:c3", "relay:stream:c4", "relay:stream:c5"]
        assert client.zcard("relay:channels") == 3
        assert int(client.hget("relay:channels:bytes", "*") or 0) == sum(
            len(i) + len(f[b"e"]) + len(f[b"d"]) for e in streams.values() for i, f in e)
        for key in [*streams, "relay:channels", "relay:channels:bytes"]:
            assert 0 < client.pttl(key) <= 30_000


def test_all_channels_in_redis_hold_at_most_channels_memory(redis_server: RedisServer) -> None:
    client = redis_server.client()
    with _relays(redis_server, 1, "--channels-memory", str(MIB)) as (port,):
        for i in range(40):
            reply = publish(port, f"m{i % 8}", "x" * (64 * 1024 - 64))
            assert reply.status == 200
        total = sum(len(i) + len(f[b"e"]) + len(f[b"d"])
                    for e in _held_entries(client).values() for i, f in e)
        assert MIB - 64 * 1024 < total <= MIB
        assert int(client.hget("relay:channels:bytes", "*") or 0) == total
        last = json.loads(reply.body)["id"].encode()
        assert client.xrange("relay:stream:m7")[-1][0] == last  # the newest stays


def test_redis_ids_never_repeat_on_a_channel_evicted_in_the_same_millisecond(
        redis_server: RedisServer) -> None:
    """--max-channels 1, publishes to A, A, B, A, A inside one millisecond: A's ids after its
    eviction are past its earlier ones, and a subscriber holding an evicted one gets a reset,
    then what is held. The millisecond is made to stand still, not waited for: the last id
    given is set a minute ahead, so Redis's clock is behind it for every publish, as when five
    publishes share a millisecond (or the clock steps back)."""
    client = redis.Redis.from_url(redis_server.url)
    ahead = int(client.time()[0]) * 1000 + 60_000
    client.set("relay:channels:last-id", f"{ahead}-0")

    async def scenario() -> list[tuple[int, int]]:
        loop = asyncio.get_running_loop()
        broker = RedisBroker(RedisLink(redis_server.url, loop), loop,
                             ChannelLimits(max_channels=1), own_link=True)
        try:
            keys = [(await broker.publish(c, c, None))[0].key for c in "aabaa"]
            replay = await broker.replay("a", keys[1], True)  # evicted with a's history
            assert replay.reset and [e.key for e in replay.events] == keys[3:]
        finally:
            await asyncio.wait_for(broker.close(), CLOSE_BOUND)
        return keys

    keys = asyncio.run(scenario())
    assert [ms for ms, _ in keys] == [ahead] * 5  # one millisecond for all five
    mine = [keys[i] for i in (0, 1, 3, 4)]  # a's
    assert mine == sorted(set(mine)), keys  # none repeats


def test_a_position_redis_does_not_hold_gives_a_reset_then_the_held_events(
        redis_server: RedisServer) -> None:
    """A Last-Event-ID from the future or from another channel: a reset, then every event the
    Stream holds, as the memory broker does (it was the reset and nothing)."""
    with _relays(redis_server, 1) as (port,):
        ids = [json.loads(publish(port, "log", f"e{i}").body)["id"] for i in range(3)]
        other = json.loads(publish(port, "other", "elsewhere").body)["id"]
        for position in ("9999999999999-0", other):
            stream = EventStream(port, b"/events/log", [(b"last-event-id", position.encode())])
            stream.read(4)
            assert stream.events[0].event == "relay.reset", position
            assert [e.id for e in stream.events[1:]] == ids
            assert _ids_of(stream) == ["e0", "e1", "e2"]


def test_redis_from_the_start_a_reset_only_when_events_were_lost(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        broker = RedisBroker(RedisLink(redis_server.url, loop), loop, FROM_THE_START,
                             own_link=True)
        try:
            await from_the_start_resets_only_what_lost_events(broker)
        finally:
            await asyncio.wait_for(broker.close(), CLOSE_BOUND)

    asyncio.run(scenario())


def _health(port: int) -> tuple[int, dict[str, Any]]:
    with connect(port) as sock:
        client = H11Client(sock)
        client.send(b"GET", b"/healthz")
        reply = client.read_reply()
    return reply.status, json.loads(reply.body)


def test_healthz_says_503_while_redis_is_unreachable_and_ok_once_it_is_back(
        redis_server: RedisServer) -> None:
    """A load balancer probing /healthz stops sending while Redis is away (the publishes would
    get 503 anyway), and sends again once it is back; the relay's own 503s are
    ``server_error``s."""
    with _relays(redis_server, 1) as (port,):
        status, doc = _health(port)
        assert status == 200 and doc["status"] == "ok"
        redis_server.stop()
        down = publish(port, "up", "lost?")
        assert down.status == 503
        assert json.loads(down.body)["error"]["type"] == "server_error"
        assert wait_until(lambda: _health(port)[0] == 503, 10)
        status, doc = _health(port)
        error = doc["error"]
        assert status == 503 and error["type"] == "server_error"
        assert error["code"] == "redis_unavailable" and "Redis" in error["message"]
        assert "unreachable" in error["message"] and error["param"] is None
        redis_server.start()  # on the same port
        assert wait_until(lambda: _health(port)[0] == 200, 10)
        assert _health(port)[1]["status"] == "ok"
