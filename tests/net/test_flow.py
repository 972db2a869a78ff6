"""WriteFlow in isolation (end to end: tests/e2e/test_backpressure.py)."""

from __future__ import annotations

import asyncio

import pytest

from relay.errors import ClientGone
from relay.net.flow import WriteFlow


def test_wait_writable_returns_at_once_when_not_paused() -> None:
    async def main() -> None:
        await asyncio.wait_for(WriteFlow().wait_writable(), 0.5)

    asyncio.run(main())


def test_wait_writable_waits_for_resume() -> None:
    async def main() -> None:
        flow = WriteFlow()
        flow.pause()
        waiter = asyncio.ensure_future(flow.wait_writable())
        await asyncio.sleep(0)
        assert not waiter.done()
        flow.resume()
        await asyncio.wait_for(waiter, 0.5)

    asyncio.run(main())


def test_wait_writable_wakes_and_raises_when_the_connection_is_lost() -> None:
    async def main() -> None:
        flow = WriteFlow()
        flow.pause()
        waiters = [asyncio.ensure_future(flow.wait_writable()) for _ in range(3)]
        await asyncio.sleep(0)
        flow.lost()
        for w in waiters:
            with pytest.raises(ClientGone):
                await asyncio.wait_for(w, 0.5)
        with pytest.raises(ClientGone):
            await flow.wait_writable()  # and later calls raise at once

    asyncio.run(main())
