"""A pipelining flood: what a client that sends requests and reads nothing costs the relay.

    .venv/bin/python -m bench.flood [--tree PATH ...] [--path /healthz] [--requests 100000]

For each checkout (``--tree``, default: this one) this starts ``relay serve``, sends
``--requests`` pipelined ``GET`` requests for a local endpoint on one connection for up to
``--seconds``, reads nothing, waits, and prints how much the relay's RSS grew. A relay that
builds an answer per request it reads grows with the flood; one that takes the next request only
once the previous answers drained (nginx's and Envoy's rule) holds one write buffer.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .procs import wait_port

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def flood(tree: Path, path: str, requests: int, seconds: float) -> tuple[int, float]:
    """(bytes the client got into the kernel, RSS growth in MiB)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "relay", "serve", "--port", str(port),
                             "--access-log", "off"], cwd=tree,
                            env={**os.environ, "PYTHONPATH": str(tree)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        before = _rss_kib(proc.pid)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            request = f"GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n".encode()
            data = memoryview(request * requests)
            sent, deadline = 0, time.monotonic() + seconds
            while sent < len(data) and time.monotonic() < deadline:
                try:
                    sent += sock.send(data[sent:sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
            time.sleep(3)  # whatever the relay builds from what it read, it has built by now
            return sent, (_rss_kib(proc.pid) - before) / 1024
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", type=Path)
    ap.add_argument("--path", default="/healthz")
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    for tree in args.tree or [ROOT]:
        sent, growth = flood(tree.resolve(), args.path, args.requests, args.seconds)
        print(f"{tree!s:40} {args.requests} x GET {args.path}: {sent:,} bytes sent, "
              f"relay RSS +{growth:.1f} MiB")


if __name__ == "__main__":
    main()
