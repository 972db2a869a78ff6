"""WriteFlow and ReadGate in isolation (end to end: test_backpressure.py)."""

from __future__ import annotations

import asyncio

import pytest

from relay.errors import ClientGone
from relay.flow import ReadGate, WriteFlow


def test_drain_returns_at_once_when_not_paused() -> None:
    async def main() -> None:
        await asyncio.wait_for(WriteFlow().drain(), 0.5)

    asyncio.run(main())


def test_drain_waits_for_resume() -> None:
    async def main() -> None:
        flow = WriteFlow()
        flow.pause()
        waiter = asyncio.ensure_future(flow.drain())
        await asyncio.sleep(0)
        assert not waiter.done()
        flow.resume()
        await asyncio.wait_for(waiter, 0.5)

    asyncio.run(main())


def test_drain_wakes_and_raises_when_connection_lost() -> None:
    async def main() -> None:
        flow = WriteFlow()
        flow.pause()
        waiters = [asyncio.ensure_future(flow.drain()) for _ in range(3)]
        await asyncio.sleep(0)
        flow.lost()
        for w in waiters:
            with pytest.raises(ClientGone):
                await asyncio.wait_for(w, 0.5)
        with pytest.raises(ClientGone):
            await flow.drain()  # and later calls raise at once

    asyncio.run(main())


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return False


def test_read_gate_counts_reasons() -> None:
    t = FakeTransport()
    gate = ReadGate(t)  # type: ignore[arg-type]
    gate.pause("client")
    gate.pause("drain")
    gate.pause("client")
    assert t.calls == ["pause"]
    gate.resume("client")
    assert t.calls == ["pause"] and gate.paused
    gate.resume("unknown")
    gate.resume("drain")
    assert t.calls == ["pause", "resume"] and not gate.paused
