"""The memory broker: a publish keeps the event and hands it to the hub; a replay reads the
history (the Redis broker, against a real server: test_redis_broker.py)."""

from __future__ import annotations

import asyncio

from relay.channels.broker import MemoryBroker
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
