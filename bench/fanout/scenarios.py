"""F1 and F2: subscribers connected and idle, then one window of publishing and its drain,
measured by the hub's CPU and RSS, the cores' ticks and the subscribers' own counts."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from .figures import Window, shortfall, window_row
from .hubs import Hub, redis_clients
from .load import Load, Published, Subscriber, connect_subscribers, publish
from .meters import Meters
from .wire import Tally

SCENARIOS = ("F1", "F2", "F-stall")
DRAIN_WAIT_S = 5.0  # after the last publish, deliveries still missing are waited for this long
PublishFn = Callable[[list[str], Tally], Awaitable[Published]]


def channel_names(channels: int) -> list[str]:
    """F1's one channel is "f1"; F2's are "c0", "c1", ..."""
    return ["f1"] if channels == 1 else [f"c{c}" for c in range(channels)]


async def warm_up(hub: Hub, size: int, names: list[str]) -> None:
    """One subscriber, one publish, read: lazy imports and first allocations happen before the
    baseline RSS is read, not inside the per-subscriber figure. Then one publish to each of
    ``names``, still without subscribers, so the window measures the steady state: each hub
    has met every channel (nchan's channel, the relay's history, and the relay's known head
    for each channel's POST: a channel's first publish is parsed in full)."""
    tally = Tally()
    subs = await connect_subscribers(hub, ["warm"], 1, tally, 10)
    await asyncio.sleep(0.3)
    await publish(hub, ["warm"], 20, 0.1, size, tally)
    for _ in range(50):
        if tally.received:
            break
        await asyncio.sleep(0.1)
    await close_all(tally, subs, 0)
    rate = 1000.0
    await publish(hub, names, rate, len(names) / rate, size, Tally(channels=len(names)))
    await asyncio.sleep(0.3)


async def measure(hub: Hub, load: Load, alongside: Awaitable[Any] | None = None,
                  publisher: PublishFn | None = None) -> dict[str, Any]:
    """Connect the subscribers, let them idle, publish for ``load.duration`` (or as
    ``publisher`` does), drain; with ``alongside``, that runs during the window too (F-stall's
    LLM streams). The row of figures (bench/fanout/figures.py)."""
    loop = asyncio.get_running_loop()
    names = channel_names(load.channels)
    await warm_up(hub, load.size, names)
    rss0 = hub.proc.rss_bytes()
    n = load.channels * load.per_channel
    tally = Tally(channels=load.channels)
    t0 = loop.time()
    subs = await connect_subscribers(hub, names, load.per_channel, tally, max(30, n / 200))
    connect_s = loop.time() - t0
    await asyncio.sleep(load.idle)
    # No garbage collection in this process during the window: a collection pauses this
    # reader, and such pauses made the slowest 1% of deliveries for every hub (they timed the
    # reader, not the hub). What a window allocates is bounded.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await run_window(hub, load, names, tally, subs, (connect_s, rss0), alongside,
                                publisher)
    finally:
        gc.enable()
        gc.unfreeze()


async def run_window(hub: Hub, load: Load, names: list[str], tally: Tally,
                     subs: list[Subscriber], before: tuple[float, int],
                     alongside: Awaitable[Any] | None, publisher: PublishFn | None
                     ) -> dict[str, Any]:
    """The window itself, from the idle subscribers' RSS to their close; ``before``: the
    seconds they took to connect and the hub's RSS before they did."""
    loop = asyncio.get_running_loop()
    rss1, clients = hub.proc.rss_bytes(), await redis_clients(hub)
    meters = Meters.read(hub)
    t1 = loop.time()
    side = asyncio.ensure_future(alongside) if alongside is not None else None
    if publisher is None:
        pub = await publish(hub, names, load.publish_rate, load.duration, load.size, tally)
    else:
        pub = await publisher(names, tally)
    publish_s = pub.seconds if pub.seconds is not None else loop.time() - t1
    await drain(tally, pub.expected, DRAIN_WAIT_S)
    seconds = loop.time() - t1
    used = Meters.read(hub).since(meters)
    side_result = await side if side is not None else None
    alive = hub.proc.alive()
    await close_all(tally, subs, 0.5)
    if not alive:
        raise RuntimeError(f"{hub.name} died during the run")
    window = Window(before[0], seconds, publish_s, before[1], rss1, clients,
                    hub.redis is not None, used)
    short = shortfall(((sub.channel, sub.received) for sub in subs), load.channels)
    row = window_row(load, tally, short, pub, window)
    if side_result is not None:
        row["alongside"] = side_result
    return row


async def drain(tally: Tally, expected: int, timeout: float) -> None:
    """Until the subscribers have read ``expected`` events, or ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    while tally.received < expected and loop.time() < until:
        await asyncio.sleep(0.02)


async def close_all(tally: Tally, subs: list[Subscriber], settle: float) -> None:
    """Close every subscriber (not counted as drops), then wait ``settle`` seconds."""
    tally.closing = True
    for sub in subs:
        sub.close()
    if settle:
        await asyncio.sleep(settle)
