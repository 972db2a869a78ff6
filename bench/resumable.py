"""The cost of a resumable stream (``X-Relay-Resumable: 1``) against a plain one, per event.

    .venv/bin/python -m bench.resumable [--reps 3]

One relay (pinned to CPU 0) in front of ``relay mock`` (CPU 1, with this load); plain and
resumable runs alternate, ``--reps`` of each, in two forms: 20 concurrent streams of 2,000
chunks written back to back (many events per read: the worst case for per-event work), and
100 streams of 200 chunks paced 10 ms apart (one event per read, like a model); relay CPU
(user+system from /proc) per event, medians, and the ratio. A resumable stream does per event
what a plain one never does: it decodes the upstream's chunks, cuts the body into events (a
regex match per event), inserts the ``id:`` line (one bytes copy), keeps the event, and frames
what is new as a chunk of its own instead of passing the upstream's chunks through.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from .procs import Proc, cpu_sets, free_port, wait_port
from .relay_cpu import load

RESUMABLE = b"x-relay-resumable: 1\r\n"


def measure(relay: Proc, port: int, streams: int, tokens: int, extra: bytes) -> float:
    """Relay CPU microseconds per event for one batch of streams."""
    (u0, s0) = relay.cpu_times()
    events, _ = asyncio.run(load(port, streams, tokens, extra))
    (u1, s1) = relay.cpu_times()
    return (u1 - u0 + s1 - s0) / events * 1e6


FORMS = (("back to back", 20, 2000, b""), ("paced 10 ms", 100, 200, b"x-mock-delay-ms: 10\r\n"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="streams x this (a quick try)")
    args = ap.parse_args(argv)
    relay_cpus, load_cpus = cpu_sets()
    os.sched_setaffinity(0, load_cpus)
    logs = Path(tempfile.mkdtemp(prefix="relay-resumable-"))
    mock_port, port = free_port(), free_port()
    mock = Proc([sys.executable, "-m", "relay", "mock", "--port", str(mock_port)], load_cpus,
                logs / "mock.log")
    # Ended streams are kept for --resume-ttl: room for every run's events.
    relay = Proc([sys.executable, "-m", "relay", "serve", "--port", str(port), "--access-log",
                  "off", "--upstream", f"http://127.0.0.1:{mock_port}",
                  "--resume-memory", str(4 << 30)], relay_cpus, logs / "relay.log")
    rows = []
    try:
        wait_port(mock_port)
        wait_port(port)
        asyncio.run(load(port, 2, 100))  # warm up both paths
        asyncio.run(load(port, 2, 100, RESUMABLE))
        for name, streams, tokens, pace in FORMS:
            streams = max(1, int(streams * args.scale))
            plain: list[float] = []
            resumable: list[float] = []
            for _ in range(args.reps):
                plain.append(measure(relay, port, streams, tokens, pace))
                resumable.append(measure(relay, port, streams, tokens, pace + RESUMABLE))
            rows.append((f"{name} ({streams} x {tokens})", plain, resumable))
    finally:
        relay.stop()
        mock.stop()
    print(f"relay CPU per event, medians of {args.reps} (plain and resumable alternating)")
    print(f"{'form':32} {'plain us':>9} {'resumable us':>13} {'ratio':>6} {'added us':>9}")
    for name, plain, resumable in rows:
        p, r = statistics.median(plain), statistics.median(resumable)
        print(f"{name:32} {p:9.2f} {r:13.2f} {r / p:5.2f}x {r - p:+9.2f}")


if __name__ == "__main__":
    main()
