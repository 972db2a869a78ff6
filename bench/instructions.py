"""Instructions the relay executes per short stream and per event, counted by valgrind.

    .venv/bin/python -m bench.instructions [--tree PATH ...] [--short 300] [--long 30x300]
    .venv/bin/python -m bench.instructions [--tree PATH ...] --publishes 2000

CPU time on a shared machine moves by tens of percent from one run to the next; the number of
instructions a process executes for the same work does not (callgrind counts them, whatever
else the machine does: repeatable within ~1% here). So for comparing two versions of the relay
(``--tree`` names a checkout each, default: this one) this counts, for the relay process alone
under ``valgrind --tool=callgrind``:

* startup and shutdown with no request (subtracted from the others);
* ``--short N``: N one-token streams, each on a new connection (the per-stream setup cost);
* ``--long SxT``: S streams of T events, each on a new connection (per event, once the
  per-stream cost is taken out); back to back (many events per read), or one event per read
  with ``--delay-ms 1``;
* or, with ``--publishes N``: N publishes to a channel with ``--subscribers`` (10) on it, one
  request per read on a keep-alive connection (benchmark F's F2 per publish), less the same
  run with no publish.

The relay also works by the clock while it is up (the loop-lag probe 20 times a second, the
deadline and heartbeat ticks), and under valgrind the same work takes longer on a busier
machine: counted whole, that made a tree's per-publish figure move by 4% from one run to the
next. So an idle run (``--idle`` seconds, nothing sent) gives what one second of being up costs,
and every figure has that cost, times the seconds its run took beyond the base run, taken out;
the table prints the rate.

The mock upstream and the client run natively beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from .procs import wait_port

ROOT = Path(__file__).resolve().parents[1]
SETTLE = 3.0  # seconds the base run stays up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _streams(port: int, n: int, tokens: int, delay_ms: int) -> None:
    body = json.dumps({"model": "m", "stream": True, "max_tokens": tokens,
                       "messages": []}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
               b"content-type: application/json\r\nx-mock-delay-ms: %d\r\n"
               b"content-length: %d\r\n\r\n%s" % (delay_ms, len(body), body))
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request)
            got = b""
            while not got.endswith(b"0\r\n\r\n"):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the relay closed a stream early")
                got += data


def _recv_answer(sock: socket.socket) -> bytes:
    """One whole Content-Length answer (the head and body of a publish's reply)."""
    got = b""
    while b"\r\n\r\n" not in got:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("the relay closed the publisher's connection")
        got += data
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _publishes(port: int, n: int, subscribers: int) -> None:
    """``subscribers`` on one channel, then ``n`` publishes on one keep-alive connection, each
    waiting for its answer (one request per read, as in benchmark F's F2)."""
    subs = [socket.create_connection(("127.0.0.1", port)) for _ in range(subscribers)]
    for sock in subs:
        sock.sendall(b"GET /events/bench HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        while b"retry:" not in sock.recv(65536):
            pass  # (the retry line comes in the same write as the head: one read here)
    body = b'{"data": "' + b"x" * 180 + b'"}'
    request = (b"POST /events/bench HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: "
               b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    seen = [0] * subscribers
    with socket.create_connection(("127.0.0.1", port)) as pub:
        for _ in range(n):
            pub.sendall(request)
            if not _recv_answer(pub).startswith(b"HTTP/1.1 200 "):
                raise RuntimeError("a publish was refused")
            _drain(subs, seen, False)  # read as they come: no write buffer grows in the relay
    _drain(subs, seen, True, n)  # every event reached every subscriber before the relay stops
    for sock in subs:
        sock.close()


def _drain(subs: list[socket.socket], seen: list[int], wait: bool, until: int = 0) -> None:
    for i, sock in enumerate(subs):
        sock.setblocking(wait)
        while not wait or seen[i] < until:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            seen[i] += data.count(b"\ndata: ")


class Run(NamedTuple):
    """One relay process: its instructions, and the seconds it was up between listening and
    being told to stop."""

    instructions: int
    seconds: float


def count(tree: Path, streams: int, tokens: int, delay_ms: int = 0,
          publishes: tuple[int, int] | None = None, idle: float = 0.0) -> Run:
    """Instructions executed by a relay from ``tree`` serving ``streams`` x ``tokens``, or
    ``publishes`` (publishes, subscribers) to one channel, or nothing for ``idle`` seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    mock_port, relay_port = _free_port(), _free_port()
    mock = subprocess.Popen([sys.executable, "-m", "relay", "mock", "--port", str(mock_port)],
                            cwd=tree, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        relay = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             "-m", "relay", "serve", "--port", str(relay_port), "--upstream",
             f"http://127.0.0.1:{mock_port}", "--access-log", "off", "--log-level", "warning"],
            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
        up: float | None = None
        try:
            wait_port(mock_port)
            wait_port(relay_port, timeout=120)
            up = time.monotonic()
            if publishes is None:
                _streams(relay_port, streams, tokens, delay_ms)
            else:
                _publishes(relay_port, *publishes)
            time.sleep(idle)  # (the idle run: the cost of being up, by the clock)
        finally:
            seconds = time.monotonic() - up if up is not None else 0.0
            relay.send_signal(signal.SIGTERM)
            relay.wait(120)
            mock.terminate()
            mock.wait(10)
        log.seek(0)
        match = re.search(r"Collected : (\d+)", log.read())
    if match is None:
        raise RuntimeError("valgrind printed no instruction count")
    return Run(int(match.group(1)), seconds)


class Baseline:
    """A tree's run with nothing to do, and what one second of being up costs (from an idle
    run): :meth:`work` is a run's instructions less both."""

    def __init__(self, tree: Path, idle: float, publishes: tuple[int, int] | None = None) -> None:
        # (Both up for a while: what the relay does once, soon after it listens, is in both.)
        self.base = count(tree, 0, 1, publishes=publishes, idle=SETTLE)
        idle_run = count(tree, 0, 1, publishes=publishes, idle=SETTLE + idle)
        self.per_second = max(0.0, (idle_run.instructions - self.base.instructions)
                              / max(idle_run.seconds - self.base.seconds, 1e-9))

    def work(self, run: Run) -> float:
        return (run.instructions - self.base.instructions
                - self.per_second * max(0.0, run.seconds - self.base.seconds))


def measure(tree: Path, short: int, long_streams: int, long_tokens: int,
            delay_ms: int, idle: float) -> dict[str, float]:
    started = time.monotonic()
    baseline = Baseline(tree, idle)
    per_stream = baseline.work(count(tree, short, 1)) / short
    long_work = baseline.work(count(tree, long_streams, long_tokens, delay_ms))
    per_event = (long_work - long_streams * per_stream) / (long_streams * long_tokens)
    return {"startup": baseline.base.instructions, "per_second": baseline.per_second,
            "per_short_stream": per_stream, "per_event": per_event,
            "seconds": time.monotonic() - started}


def measure_publishes(tree: Path, publishes: int, subscribers: int,
                      idle: float) -> tuple[float, float]:
    """Instructions per publish to a channel with ``subscribers``, the subscribing and the
    cost of being up taken out; and that cost per second."""
    baseline = Baseline(tree, idle, publishes=(0, subscribers))
    run = count(tree, 0, 1, publishes=(publishes, subscribers))
    return baseline.work(run) / publishes, baseline.per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", type=Path,
                    help="a checkout of the relay to measure (repeatable; default: this one)")
    ap.add_argument("--short", type=int, default=300, help="one-token streams")
    ap.add_argument("--long", default="20x1000", help="STREAMSxEVENTS")
    ap.add_argument("--delay-ms", type=int, default=0,
                    help="pace the long streams' events (0: back to back, many per read; "
                         "1: about one event per read, as in scenario C)")
    ap.add_argument("--publishes", type=int, default=0,
                    help="instead: this many publishes to one channel (per publish)")
    ap.add_argument("--subscribers", type=int, default=10, help="with --publishes")
    ap.add_argument("--idle", type=float, default=20.0,
                    help="seconds of the idle run that prices being up (taken out of each run)")
    args = ap.parse_args()
    if args.publishes:
        print(f"{'tree':40} {'per publish':>12} {'per second up':>14}  (instructions; "
              f"{args.subscribers} subscribers)")
        for tree in args.tree or [ROOT]:
            per, rate = measure_publishes(tree.resolve(), args.publishes, args.subscribers,
                                          args.idle)
            print(f"{tree!s:40} {per:12,.0f} {rate:14,.0f}", flush=True)
        return
    long_streams, long_tokens = (int(x) for x in args.long.split("x"))
    print(f"{'tree':40} {'per short stream':>18} {'per event':>10} {'per second up':>14}  "
          "(instructions)")
    for tree in args.tree or [ROOT]:
        m = measure(tree.resolve(), args.short, long_streams, long_tokens, args.delay_ms,
                    args.idle)
        print(f"{tree!s:40} {m['per_short_stream']:18,.0f} {m['per_event']:10,.0f} "
              f"{m['per_second']:14,.0f}", flush=True)


if __name__ == "__main__":
    main()
