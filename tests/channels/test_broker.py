"""The memory broker: a publish keeps the event and hands it to the hub; a replay reads the
history (the Redis broker, against a real server: test_redis_broker.py)."""

from __future__ import annotations

import asyncio

from relay.channels.broker import Broker, MemoryBroker
from relay.channels.events import START
from relay.config import ChannelLimits

from ..support import FakeLoop


def test_publish_keeps_and_delivers_and_replay_reads(fake_loop: FakeLoop) -> None:
    clock = iter([1000.0, 1000.0, 1000.5, 1001.0]).__next__

    async def scenario() -> None:
        broker = MemoryBroker(fake_loop, ChannelLimits(), clock)  # type: ignore[arg-type]
        first, delivered = await broker.publish("c", "one", None)
        assert delivered == 0 and first.id == "1000000-0"  # nobody here yet
        second, _ = await broker.publish("c", "two", "named")
        assert second.id == "1000000-1" and b"event: named\n" in second.raw  # same millisecond
        replay = await broker.replay("c", first.key, True)
        assert replay.events == [second] and not replay.reset
        await broker.close()

    asyncio.run(scenario())


# ``0-0`` on a channel that lost nothing once sent a reset as well: the same scenario for both
# brokers (test_redis_broker.py runs it against a real server).
FROM_THE_START = ChannelLimits(history=3, max_channels=2)


async def from_the_start_resets_only_what_lost_events(broker: Broker) -> None:
    """``0-0`` is the position before any event: everything held, and a reset only when the
    channel lost some (dropped from its history, or the channel evicted, or made again after
    an eviction: it may be the evicted one)."""
    kept = [(await broker.publish("kept", f"k{i}", None))[0].id for i in range(3)]
    whole = await broker.replay("kept", START, True)
    assert not whole.reset and [e.id for e in whole.events] == kept
    never = await broker.replay("never", START, True)
    assert not never.reset and never.events == []
    trimmed = [(await broker.publish("trimmed", f"t{i}", None))[0].id for i in range(4)]
    partial = await broker.replay("trimmed", START, True)  # its first event was dropped
    assert partial.reset and [e.id for e in partial.events] == trimmed[1:]
    await broker.publish("third", "x", None)  # over max_channels: "kept" goes
    assert (await broker.replay("kept", START, True)).reset
    assert (await broker.replay("never", START, True)).reset  # (it could be an evicted one)
    again = (await broker.publish("kept", "again", None))[0]
    made_again = await broker.replay("kept", START, True)
    assert made_again.reset and [e.id for e in made_again.events] == [again.id]


def test_from_the_start_a_reset_only_when_events_were_lost() -> None:
    async def scenario() -> None:
        broker = MemoryBroker(asyncio.get_running_loop(), FROM_THE_START)
        try:
            await from_the_start_resets_only_what_lost_events(broker)
        finally:
            await broker.close()

    asyncio.run(scenario())
