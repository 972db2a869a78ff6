"""F-stall: does fan-out stall relayed LLM streams? 200 streams run throughout while publishing
to F1's subscribers goes on and off in windows; each token is classed by the window it was read
in, and the figure is the difference of the two sides' p99."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..stats import ms, percentiles
from .figures import split_by_windows
from .hubs import Hub
from .load import Load, Published, publish
from .scenarios import measure
from .wire import Tally

STREAM_S = 5.0  # the LLM streams: 100 tokens, 50 ms apart
WINDOW_S = 2.0  # publishing on for this long, then off for as long, and again
DRAIN_S = 1.0  # after a window, its last publishes are still being delivered


async def stall(hub: Hub, load: Load, streams: int, workdir: Path) -> dict[str, Any]:
    """The LLM streams run throughout; publishing to the F1 subscribers goes on and off in
    windows of ``WINDOW_S``, so both sides of the comparison share whatever the host does
    meanwhile (its steal moves a p99 by more than the target between two runs)."""
    pairs = max(1, round(load.duration / WINDOW_S))
    windows: list[tuple[float, float]] = []

    async def in_windows(names: list[str], tally: Tally) -> Published:
        await asyncio.sleep(STREAM_S)  # the streams' ramp: all open before the first window
        total = Published(seconds=0.0)
        for _ in range(pairs):
            start = time.time()
            total.add(await publish(hub, names, load.publish_rate, WINDOW_S, load.size, tally))
            windows.append((start, time.time()))
            await asyncio.sleep(WINDOW_S)
        total.seconds = sum(end - start for start, end in windows)
        return total

    span = STREAM_S + pairs * 2 * WINDOW_S + 1
    row = await measure(hub, load, llm_streams(hub, streams, span, workdir, "stall"),
                        in_windows)
    return stall_row(row, row.pop("alongside"), windows, streams)


def stall_row(row: dict[str, Any], side: dict[str, Any], windows: list[tuple[float, float]],
              streams: int) -> dict[str, Any]:
    """The fan-out window's ``row`` with the LLM streams' figures (``side``: their every
    token's read time and latency) on each side of the ``windows``."""
    on, off = split_by_windows(side["at"], side["latency"], windows, DRAIN_S)
    (on50, on99), (off50, off99) = percentiles(on, (50, 99)), percentiles(off, (50, 99))
    delta = None if on99 is None or off99 is None else ms(on99 - off99)
    return {**row, "streams": streams, "stall_windows": len(windows),
            "stall_window_s": WINDOW_S,
            "stall_events_publishing": len(on), "stall_events_quiet": len(off),
            "stall_errors": side["errors"], "stall_error_kinds": side["error_kinds"],
            "stall_p99_alone_ms": ms(off99), "stall_p99_fanout_ms": ms(on99),
            "stall_p99_delta_ms": delta,
            "stall_p50_alone_ms": ms(off50), "stall_p50_fanout_ms": ms(on50)}


async def llm_streams(hub: Hub, streams: int, duration: float, workdir: Path, tag: str
                      ) -> dict[str, Any]:
    """``streams`` relayed LLM streams (100 tokens, 50 ms apart, timestamped by the mock) kept
    open for ``duration`` s by bench.loadgen in its own process: its loop is not the one
    reading the subscribers. Also every token's read time (``at``) and latency."""
    out, events = workdir / f"llm-{tag}.json", workdir / f"llm-{tag}-events.json"
    # Starts spread over one stream's length (100 x 50 ms): streams start and end at a steady
    # rate, not in waves whose ends pile up in the slowest 1%.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", f"http://127.0.0.1:{hub.port}", "--no-progress",
        "--streams", str(streams), "--duration", str(duration), "--tokens", "100",
        "--delay-ms", "50", "--ramp", str(STREAM_S), "--json", str(out),
        "--latencies", str(events),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        preexec_fn=raise_priority)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), duration + 60)
    except TimeoutError:
        proc.kill()
        raise RuntimeError("bench.loadgen did not stop") from None
    if proc.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed: {err.decode(errors='replace')[-800:]}")
    r = json.loads(out.read_text())
    per_event = json.loads(events.read_text())
    return {"events": r["events"], "errors": r["errors"], "error_kinds": r["error_kinds"],
            "at": per_event["at"], "latency": per_event["latency"]}


def raise_priority() -> None:
    """Ahead of the subscribers' reader on the load CPU: the measurement is of the relay's
    delay, not of this machine's scheduler. SCHED_FIFO: woken by a token, the client runs at
    once, never after a slice of the reader (which holds the load CPU for every subscriber of
    a publish). Its own work is small; the kernel caps real-time tasks at 95% anyway."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:  # (not root: a higher nice priority, when allowed)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)
