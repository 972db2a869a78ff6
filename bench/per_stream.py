"""Per-stream setup cost: many 1-token streams, each on a new connection; CPU per stream.

    .venv/bin/python -m bench.per_stream [--streams 2000] [--relays relay,nginx] [--reps 2]

Scenario C spreads each stream's setup (accept, request head, upstream connect, response head,
close) over only 100 events, so this cost decides much of C's CPU per event. Each repetition
starts a fresh mock and relay (pinned as in ``python -m bench``) and prints the relay's CPU
seconds (user+system from /proc) divided by the number of streams.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from .procs import Proc, cpu_sets, free_port, wait_port
from .relays import spec as relay_spec
from .scenarios import loadgen_headers, measure


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--relays", default="relay,nginx")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    relay_cpus, load_cpus = cpu_sets()
    os.sched_setaffinity(0, load_cpus)
    for rep in range(args.reps):
        for name in args.relays.split(","):
            spec = relay_spec(name)
            if spec.missing():
                print(f"{name:8} MISSING: {spec.missing()}")
                continue
            workdir = Path(tempfile.mkdtemp(prefix="relay-per-stream-"))
            mock_port, port = free_port(), free_port()
            mock = Proc([sys.executable, "-m", "relay", "mock", "--port", str(mock_port)],
                        load_cpus, workdir / "mock.log")
            wait_port(mock_port)
            relay = spec.start(port, mock_port, relay_cpus, workdir)
            try:
                argv = [sys.executable, "-m", "bench.loadgen", f"http://127.0.0.1:{port}",
                        "--once", "--no-progress", "--streams", str(args.streams), "--tokens",
                        "1", "--delay-ms", "1", "--ramp", str(max(1.0, args.streams / 1000)),
                        "--json", str(workdir / "out.json"), *loadgen_headers(spec.headers())]
                _, cpu, *_ = measure(relay, argv, load_cpus, 300)
                r = json.loads((workdir / "out.json").read_text())
                per = f"{cpu / args.streams * 1e6:.0f} us" if relay else "-"
                print(f"rep {rep + 1} {name:8} streams={args.streams} errors={r['errors']} "
                      f"cpu={cpu:.2f}s per stream={per}", flush=True)
            finally:
                if relay:
                    relay.stop()
                mock.stop()


if __name__ == "__main__":
    main()
