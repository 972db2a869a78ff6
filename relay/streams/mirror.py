"""A mirror: this instance's copy of a resumable stream another instance owns (``--redis``).

It is a :class:`~relay.streams.stream.ResumableStream` without an upstream, filled from Redis by
:class:`relay.streams.redis_store.RedisStore` (its module docstring tells the whole protocol)
and read by the usual :class:`~relay.streams.stream.Follower`. This class is its state: what
the store knows of it, and how a position is found in a copy that lags its owner.
"""

from __future__ import annotations

import asyncio

from .stream import ResumableStream, StreamHost


class Mirror(ResumableStream):
    """This instance's copy of a stream owned elsewhere (see the module docstring).

    ``built`` is resolved once Redis was first read (with an error, or None); ``ready`` once its
    topic's SUBSCRIBE is confirmed (read after that, nothing is missed); ``holds`` counts the
    finds and cancels using it, so it is not dropped under them; ``full`` says it was let go
    because this instance's memory for streams was full (a find then answers 503)."""

    __slots__ = ("again", "built", "ended", "following", "found", "full", "holds", "ready",
                 "syncing")

    def __init__(self, stream_id: str, host: StreamHost) -> None:
        super().__init__(stream_id, None, host)  # (its owner comes from Redis)
        self.built: asyncio.Future[str | None] = host.loop.create_future()  # or an error
        self.ready: asyncio.Future[None] = host.loop.create_future()  # SUBSCRIBE confirmed
        self.ended, self.found = asyncio.Event(), False  # (found: Redis has it)
        self.holds, self.following = 0, False  # finds and cancels using it; ``follow`` sent
        self.syncing, self.again = True, False  # reading Redis; a poke came meanwhile
        self.full = False  # let go: this instance's memory for streams was full

    def position_after(self, last_id: int) -> int:
        """A mirror lags its owner, whose readers may have had events it has not read yet:
        while live, a position past its end waits for them (rather than repeating some)."""
        return max(0, last_id) if self.live else super().position_after(last_id)
