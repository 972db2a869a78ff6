"""The instance's two Redis connections, against a real redis-server: messages reach the
listener of their prefix, confirmations too, and after Redis comes back every listener's
topics are subscribed again and each is told to catch up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError

from relay.redis_link import RedisLink

from .support.redis_server import RedisServer


class _Listener:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.wanted: list[str] = []
        self.got: list[tuple[str, str, Any]] = []
        self.connects = self.losses = 0
        self.changed = asyncio.Event()

    def topics(self) -> list[str]:
        return list(self.wanted)

    def on_message(self, topic: str, kind: str, data: Any) -> None:
        assert topic.startswith(self.prefix)
        self.got.append((topic, kind, data))
        self.changed.set()

    async def on_connected(self) -> None:
        self.connects += 1
        self.changed.set()

    def on_lost(self) -> None:
        self.losses += 1

    async def wait(self, ok: Any, timeout: float = 10) -> None:
        async def until() -> None:
            while not ok():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


def test_prefixes_confirmations_and_a_reconnect(redis_server: RedisServer) -> None:
    async def run() -> None:
        link = RedisLink(redis_server.url, asyncio.get_running_loop())
        a, b = _Listener("a:"), _Listener("b:")
        a.wanted = ["a:1"]
        link.listen(a, "a:")
        link.listen(b, "b:")
        await a.wait(lambda: a.connects == 1 and b.connects == 1)
        await link.subscribe("b:2")
        await b.wait(lambda: any(t == "b:2" and k == "subscribe" for t, k, _ in b.got))
        await link.cmd.publish("a:1", "one")
        await link.cmd.publish("b:2", "two")
        await a.wait(lambda: ("a:1", "message", b"one") in a.got)
        await b.wait(lambda: ("b:2", "message", b"two") in b.got)
        assert sorted(redis_server.relay_connections().values()) == [2]
        b.wanted = ["b:2"]
        redis_server.stop()
        redis_server.start()  # (same port, empty)
        await a.wait(lambda: a.connects == 2 and b.connects == 2, timeout=15)
        assert a.losses == 1 and b.losses == 1
        # The command connection died with the server: its first command fails (no retries
        # of redis-py's own), the next reconnects.
        with contextlib.suppress(RedisError):
            await link.cmd.ping()
        await link.cmd.publish("b:2", "again")  # subscribed again by the reconnect
        await b.wait(lambda: ("b:2", "message", b"again") in b.got)
        await link.close()
        assert not link.connected.is_set()

    asyncio.run(run())
