"""A fake clock for the relay's timers, in the manner of uvicorn's ``MockLoop``.

:class:`FakeLoop` stands in for the event loop where the relay takes timers from it
(``call_later``, ``call_at``, ``time``): virtual time moves only when the test calls
:meth:`FakeLoop.advance`, which runs the timers that fall due, in order. So a test shows that a
timer fires at its time and not a moment before, with no sleeps. ``call_soon`` callbacks run
on the next ``advance`` (or ``run_soon``); ``create_task`` hands coroutines to the real running
loop, so handlers still run, and :meth:`FakeLoop.settle` waits for them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Coroutine
from typing import Any


class FakeHandle:
    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]
                 ) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, FakeHandle]] = []
        self._soon: list[FakeHandle] = []
        self._order = itertools.count()
        self.tasks: list[asyncio.Task[Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> FakeHandle:
        handle = FakeHandle(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any
                   ) -> FakeHandle:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> FakeHandle:
        handle = FakeHandle(self.now, callback, args)
        self._soon.append(handle)
        return handle

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(task)
        return task

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    @property
    def pending(self) -> list[float]:
        """Due times of the timers still armed, soonest first."""
        return sorted(when for when, _, h in self._timers if not h.cancelled)

    def run_soon(self) -> None:
        while self._soon:
            batch, self._soon = self._soon, []
            for handle in batch:
                if not handle.cancelled:
                    handle.callback(*handle.args)

    async def settle(self) -> None:
        """Run what is due now, without moving time: ``call_soon`` callbacks and the tasks
        started here, until none is left (waiting on the tasks themselves, never a fixed
        number of loop turns)."""
        while True:
            self.run_soon()
            pending = [t for t in self.tasks if not t.done()]
            if not pending:
                if not self._soon:
                    return
                continue
            await asyncio.wait(pending)

    def advance(self, seconds: float) -> None:
        """Move time forward, running every callback that falls due on the way, in order."""
        target = self.now + seconds
        self.run_soon()
        while self._timers and self._timers[0][0] <= target:
            when, _, handle = heapq.heappop(self._timers)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.callback(*handle.args)
            self.run_soon()
        self.now = target
