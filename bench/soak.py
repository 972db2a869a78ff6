"""Soak: 1,000 concurrent streams with random faults for a bounded time, then a leak check.

    .venv/bin/python -m bench.soak [--streams 1000] [--duration 60] [--json FILE]

Starts the mock and the relay as subprocesses. Each of ``--streams`` workers runs streams back
to back until ``--duration`` has passed, each stream picking one behaviour at random:

* ``complete``: reads the whole stream (a [DONE] must arrive);
* ``client_leaves``: reads a few events, then closes the socket;
* ``leaves_early``: closes before the first byte (the mock waits 0.5 s before its first event);
* ``upstream_cut``: the mock drops the connection mid-stream (``x-mock-fail-after``): the
  client must get a final ``error`` event, never a clean end alone;
* ``upstream_error``: the mock answers 500 or 429 (passed through);
* ``slow_reader``: reads 4 KiB every 50 ms from a large stream, then leaves.

After each round it waits for the relay to settle and reads ``/healthz``: client connections
back to one (the probe), upstream connections all idle (none in use), tasks back to the idle
count. RSS is read after each round: the first round grows the heap to what the load needs
(CPython keeps freed arenas), so a leak shows as growth in the rounds after it. Prints the
figures; exits 1 on a leak or a wrong outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .procs import Proc, cpu_sets, free_port, wait_port

KINDS = ["complete", "client_leaves", "leaves_early", "upstream_cut", "upstream_error",
         "slow_reader"]
WEIGHTS = [40, 20, 10, 15, 5, 10]


def _request(tokens: int, extra: dict[str, str]) -> bytes:
    body = json.dumps({"model": "m", "stream": True, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "soak"}]}).encode()
    head = [b"POST /v1/chat/completions HTTP/1.1", b"host: localhost", b"connection: close",
            b"content-type: application/json", b"content-length: %d" % len(body)]
    head += [f"{k}: {v}".encode() for k, v in extra.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def stream_shape(kind: str, rng: random.Random) -> tuple[int, dict[str, str]]:
    """Tokens and mock headers for a stream of ``kind``."""
    extra: dict[str, str] = {"x-mock-delay-ms": str(rng.randint(1, 20))}
    tokens = rng.randint(20, 200)
    if kind == "upstream_cut":
        extra["x-mock-fail-after"] = str(rng.randint(1, tokens - 1))
    elif kind == "upstream_error":
        extra["x-mock-status"] = rng.choice(["500", "429"])
    elif kind == "leaves_early":
        extra["x-mock-ttft-ms"] = "500"
    elif kind == "slow_reader":
        tokens, extra["x-mock-delay-ms"] = 20_000, "0"
    return tokens, extra


async def one_stream(port: int, kind: str, rng: random.Random) -> str:
    """Run one stream of ``kind``; return its outcome (``ok`` or what went wrong)."""
    tokens, extra = stream_shape(kind, rng)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request(tokens, extra))
        if kind == "leaves_early":
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            return "ok"
        if kind == "client_leaves":
            got = b""
            while got.count(b"data: ") < rng.randint(1, 10):
                data = await reader.read(65536)
                if not data:
                    return "cut before the client left"
                got += data
            return "ok"
        if kind == "slow_reader":
            for _ in range(rng.randint(5, 40)):
                if not await reader.read(4096):
                    return "slow reader cut"
                await asyncio.sleep(0.05)
            return "ok"
        return whole_outcome(kind, await reader.read())  # connection: close: ends at EOF
    finally:
        writer.transport.abort()  # a client that leaves without a goodbye


def whole_outcome(kind: str, text: bytes) -> str:
    """The outcome of a stream read to its end: the status, error event or [DONE] it needs."""
    if kind == "upstream_error":
        return "ok" if text.startswith((b"HTTP/1.1 500", b"HTTP/1.1 429")) else "bad status"
    if kind == "upstream_cut":
        return "ok" if b'data: {"error"' in text and text.endswith(b"0\r\n\r\n") else (
            "cut stream without an error event")
    return "ok" if b"data: [DONE]" in text and text.endswith(b"0\r\n\r\n") else "incomplete"


async def worker(port: int, deadline: float, rng: random.Random,
                 counts: collections.Counter[str]) -> None:
    while time.monotonic() < deadline:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        try:
            outcome = await asyncio.wait_for(one_stream(port, kind, rng), 60)
        except (OSError, TimeoutError) as exc:
            outcome = f"{type(exc).__name__}"
        counts[f"{kind}:{outcome}"] += 1


async def healthz(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    doc: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return doc


def settled(doc: dict[str, Any], idle_tasks: int) -> bool:
    return (doc["client_connections"] == 1 and doc["upstream_open"] == doc["upstream_idle"]
            and doc["tasks"] <= idle_tasks)


async def soak(port: int, relay: Proc, streams: int, duration: float, rounds: int
               ) -> dict[str, Any]:
    """``rounds`` soak rounds against the same relay: the first grows Python's heap to what the
    load needs (pymalloc keeps freed arenas, so RSS does not fall back all the way); a leak
    shows as growth again in the later rounds."""
    await healthz(port)
    idle = await healthz(port)
    rss_start = relay.rss_bytes()
    results = []
    for _ in range(rounds):
        results.append(await _round(port, relay, streams, duration, idle))
    last = results[-1]
    return {**last, "rounds": rounds, "rss_start_mib": round(rss_start / 2**20, 1),
            "rss_end_by_round_mib": [r["rss_end_mib"] for r in results],
            "runs": sum(r["runs"] for r in results),
            "wrong_outcomes": {k: v for r in results for k, v in r["wrong_outcomes"].items()},
            "settled": all(r["settled"] for r in results)}


async def _round(port: int, relay: Proc, streams: int, duration: float,
                 idle: dict[str, Any]) -> dict[str, Any]:
    rss_start = relay.rss_bytes()
    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + duration
    rngs = [random.Random(i) for i in range(streams)]
    peak = rss_start

    async def sample() -> None:
        nonlocal peak
        while time.monotonic() < deadline + 60:
            peak = max(peak, relay.rss_bytes())
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample())
    started = time.monotonic()
    await asyncio.gather(*(worker(port, deadline, rngs[i], counts) for i in range(streams)))
    load_s = time.monotonic() - started
    sampler.cancel()
    settle_deadline = time.monotonic() + 30
    after = await healthz(port)
    while not settled(after, idle["tasks"]) and time.monotonic() < settle_deadline:
        await asyncio.sleep(0.2)
        after = await healthz(port)
    settle_s = time.monotonic() - (started + load_s)
    rss_end = relay.rss_bytes()
    bad = {k: v for k, v in counts.items() if not k.endswith(":ok")}
    return {
        "streams": streams, "duration_s": duration, "load_s": round(load_s, 1),
        "runs": sum(counts.values()), "outcomes": dict(sorted(counts.items())),
        "wrong_outcomes": bad, "idle_healthz": idle, "after_healthz": after,
        "settled": settled(after, idle["tasks"]), "settle_s": round(settle_s, 1),
        "rss_start_mib": round(rss_start / 2**20, 1), "rss_peak_mib": round(peak / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "cpu_s": round(relay.cpu_seconds(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    relay_cpus, load_cpus = cpu_sets()
    logs = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    mock_port, port = free_port(), free_port()
    mock = Proc([sys.executable, "-m", "relay", "mock", "--port", str(mock_port)], load_cpus,
                logs / "mock.log")
    wait_port(mock_port)
    relay = Proc([sys.executable, "-m", "relay", "serve", "--port", str(port), "--upstream",
                  f"http://127.0.0.1:{mock_port}", "--log-level", "warning"], relay_cpus,
                 logs / "relay.log")
    wait_port(port)
    try:
        result = asyncio.run(soak(port, relay, args.streams, args.duration, args.rounds))
    finally:
        relay.stop()
        mock.stop()
    log_tail = (logs / "relay.log").read_text()[-2000:]
    result["relay_log_errors"] = log_tail.count(" ERROR ")
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ends = result["rss_end_by_round_mib"]
    regrowth = ends[-1] - ends[0] if len(ends) > 1 else ends[0] - result["rss_start_mib"]
    ok = (result["settled"] and not result["wrong_outcomes"] and regrowth < 4
          and not result["relay_log_errors"])
    print(f"soak: {result['runs']} streams in {rounds_text(result)}, "
          f"{len(result['wrong_outcomes'])} wrong outcome kinds, settled={result['settled']}, "
          f"RSS {result['rss_start_mib']} MiB at start, {ends} MiB after each round "
          f"(growth after round 1: {regrowth:+.1f} MiB): {'OK' if ok else 'LEAK'}")
    sys.exit(0 if ok else 1)


def rounds_text(result: dict[str, Any]) -> str:
    return f"{result['rounds']} rounds of {result['duration_s']:g} s"


if __name__ == "__main__":
    main()
