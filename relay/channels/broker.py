"""Where events are published and kept: the broker interface, and the in-memory broker.

A broker assigns an event its id, keeps it in the channel's history, and has it delivered to the
subscribers of every relay instance that has some (:class:`~relay.channels.hub.Hub`, one per
instance). :class:`MemoryBroker` serves one instance: history in this process, delivery to its
own hub, nothing to wait for. :class:`relay.channels.redis_broker.RedisBroker` serves many.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from ..config import ChannelLimits
from .events import ChannelEvent, EventKey
from .history import Histories, Replay
from .hub import Hub


class BrokerUnavailable(Exception):
    """The shared store cannot take a publish now (Redis is down): 503, never a silent loss."""


class Broker(Protocol):
    hub: Hub
    synchronous: bool  # publish_now() always publishes (nothing is ever waited for)

    async def publish(self, channel: str, data: str, event: str | None) -> tuple[ChannelEvent, int]:
        """Keep and deliver one event: (the event, with its id; subscribers here that got it)."""
        ...

    def publish_now(self, channel: str, data: str, event: str | None
                    ) -> tuple[ChannelEvent, int] | None:
        """The same done at once, when nothing has to be waited for; None: await publish()."""
        ...

    async def replay(self, channel: str, after: EventKey | None, given: bool) -> Replay: ...
    async def close(self) -> None: ...

    @property
    def held(self) -> int:
        """Bytes of channel history this process holds (the gauge)."""
        ...


class MemoryBroker:
    """One instance's channels, in memory (see the module docstring)."""

    synchronous = True

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ChannelLimits,
                 clock: Callable[[], float] = time.time) -> None:
        self.hub = Hub(loop, limits)
        self._histories = Histories(limits)
        self._clock = clock  # (wall time: ids carry the publish time, as Redis's do)

    async def publish(self, channel: str, data: str, event: str | None) -> tuple[ChannelEvent, int]:
        return self.publish_now(channel, data, event)

    def publish_now(self, channel: str, data: str, event: str | None) -> tuple[ChannelEvent, int]:
        published = self._histories.publish(channel, data, event, self._clock())
        return published, self.hub.deliver(channel, published)

    async def replay(self, channel: str, after: EventKey | None, given: bool) -> Replay:
        return self._histories.replay(channel, after, given, self._clock())

    async def close(self) -> None:
        self.hub.close()

    @property
    def held(self) -> int:
        return self._histories.bytes
