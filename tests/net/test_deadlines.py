"""Deadlines: one tick for many members, running only while there are members."""

from __future__ import annotations

import asyncio


class Member:
    def __init__(self, deadlines: object, expire_after: int) -> None:
        self.calls: list[float] = []
        self.deadlines = deadlines
        self.expire_after = expire_after

    def check_deadline(self, now: float) -> None:
        self.calls.append(now)
        if len(self.calls) >= self.expire_after:
            self.deadlines.discard(self)  # type: ignore[attr-defined]


def test_tick_checks_every_member_and_stops_when_empty() -> None:
    from relay.net.deadlines import Deadlines

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, 0.01)
        a, b = Member(deadlines, 2), Member(deadlines, 4)
        deadlines.add(a)
        deadlines.add(b)
        deadline = loop.time() + 5
        while len(deadlines) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert len(a.calls) == 2 and len(b.calls) == 4
        assert deadlines._handle is None  # no tick left running with no members
        assert all(t2 > t1 for t1, t2 in zip(b.calls, b.calls[1:], strict=False))

    asyncio.run(main())


def test_close_cancels_the_tick() -> None:
    from relay.net.deadlines import Deadlines

    async def main() -> None:
        deadlines = Deadlines(asyncio.get_running_loop(), 0.01)
        member = Member(deadlines, 100)
        deadlines.add(member)
        deadlines.close()
        await asyncio.sleep(0.05)
        assert member.calls == [] and len(deadlines) == 0

    asyncio.run(main())
