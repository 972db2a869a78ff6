"""The servers under test run on a uvloop loop in a background thread; tests drive them from the
main thread with real sockets (raw, curl, http.client, the openai SDK)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

T = TypeVar("T")


class LoopThread:
    """A uvloop event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        # Under filterwarnings=error a ResourceWarning raised inside uvloop's close() makes it
        # hang instead of reporting; fixtures close what they opened, so ignore stragglers here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            self.loop.close()


def require_tool(name: str) -> str:
    """The tool's path; skip without it, or fail under RELAY_REQUIRE_ALL=1 (CI)."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed"
        if os.environ.get("RELAY_REQUIRE_ALL") == "1":
            pytest.fail(msg + " (RELAY_REQUIRE_ALL=1)")
        pytest.skip(msg)
    return path


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
               ) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
