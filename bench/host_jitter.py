"""How often this machine takes a CPU away: a loop that only reads the clock, and every gap.

    python -m bench.host_jitter --cpu 0 --seconds 20

Pinned to one CPU with nothing else to do, the loop reads ``time.perf_counter`` ~10 million
times a second; a gap between two reads longer than ``--over`` ms is time the CPU ran
something else (on a virtual machine: mostly its host). A hub's slowest 1% of deliveries are
those behind such gaps, which is why a p99 of a few ms moves between runs of the same tree.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable


def gaps(seconds: float, over: float, clock: Callable[[], float] = time.perf_counter
         ) -> list[tuple[float, float]]:
    """(seconds since the start, gap in seconds) of every gap over ``over`` seconds."""
    out: list[tuple[float, float]] = []
    start = last = clock()
    end = start + seconds
    while last < end:
        now = clock()
        if now - last > over:
            out.append((now - start, now - last))
        last = now
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.host_jitter", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--over", type=float, default=3.0, help="ms: shorter gaps are not shown")
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {args.cpu})
    found = gaps(args.seconds, args.over / 1000)
    for at, gap in found:
        print(f"{at:8.3f} s  {gap * 1000:6.1f} ms")
    total = sum(g for _, g in found)
    print(f"{len(found)} gaps over {args.over:g} ms in {args.seconds:g} s on CPU {args.cpu}: "
          f"{total * 1000:.0f} ms in all, the longest "
          f"{max((g for _, g in found), default=0) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
