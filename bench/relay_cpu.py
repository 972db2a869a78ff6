"""Relay CPU per event with events written back to back (a first, small form of scenario T).

    .venv/bin/python -m bench.relay_cpu [--streams 50] [--tokens 2000] [--loop uvloop]

Starts the mock and the relay as subprocesses (relay pinned to CPU 0 when there are two or
more), runs ``--streams`` concurrent streams of ``--tokens`` chunks each from raw asyncio
clients, and prints the relay's CPU time (user+system from /proc) per event and per MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .procs import Proc, cpu_sets, free_port, wait_port


async def one_stream(port: int, tokens: int, extra: bytes = b"") -> tuple[int, int]:
    """One stream of ``tokens`` chunks read to its end (``extra``: more header lines)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": "m", "stream": True, "max_tokens": tokens,
                       "messages": []}).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: "
                 b"application/json\r\n%scontent-length: %d\r\n\r\n%s"
                 % (extra, len(body), body))
    total, tail = 0, b""
    while not tail.endswith(b"\r\n0\r\n\r\n"):
        data = await reader.read(1 << 20)
        if not data:
            raise RuntimeError("stream cut")
        total += len(data)
        tail = (tail + data)[-16:]
    writer.close()
    return tokens + 3, total  # role chunk, tokens, finish chunk, [DONE]


async def load(port: int, streams: int, tokens: int, extra: bytes = b"") -> tuple[int, int]:
    results = await asyncio.gather(*(one_stream(port, tokens, extra) for _ in range(streams)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    args = ap.parse_args()
    relay_cpus, load_cpus = cpu_sets()
    os.sched_setaffinity(0, load_cpus)
    logs = Path(tempfile.mkdtemp(prefix="relay-cpu-"))
    mock_port, port = free_port(), free_port()
    mock = Proc([sys.executable, "-m", "relay", "mock", "--port", str(mock_port)], load_cpus,
                logs / "mock.log")
    relay = Proc([sys.executable, "-m", "relay", "serve", "--port", str(port), "--access-log",
                  "off", "--loop", args.loop, "--upstream", f"http://127.0.0.1:{mock_port}"],
                 relay_cpus, logs / "relay.log")
    try:
        wait_port(mock_port)
        wait_port(port)
        asyncio.run(load(port, 2, 100))  # warm up
        (u0, s0), t0 = relay.cpu_times(), time.monotonic()
        events, nbytes = asyncio.run(load(port, args.streams, args.tokens))
        (u1, s1), wall = relay.cpu_times(), time.monotonic() - t0
        user, system = u1 - u0, s1 - s0
        cpu = user + system
    finally:
        relay.stop()
        mock.stop()
    print(f"loop={args.loop} streams={args.streams} events={events} bytes={nbytes} "
          f"wall={wall:.2f}s events/s={events / wall:,.0f}")
    print(f"relay CPU {cpu:.2f}s (user {user:.2f}s, system {system:.2f}s): "
          f"{cpu / events * 1e6:.2f} us/event, "
          f"{cpu / (nbytes / 1e6) * 1e3:.1f} ms/MB")


if __name__ == "__main__":
    main()
