"""An asyncio SSE load client you can point at any relay (or straight at an upstream).

    python -m bench.loadgen http://127.0.0.1:8080 --streams 500 --duration 20
    python -m bench.loadgen URL --streams 2000 --tokens 100 --delay-ms 50 --once --json out.json

Each stream POSTs a chat completion with ``"stream": true`` and reads the event stream raw
(no HTTP library: the client must cost less than what it measures). It counts events (``data:``
lines), times the first one (TTFE, from the request write) and the gaps between events, and,
when events carry the mock's ``"mock_sent_at"`` send time (``x-mock-timestamps: 1``), the
per-event latency from upstream write to client read. A live progress line goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .stats import ms, percentile

MARK = b'"mock_sent_at":'
DATA = b"data: "
DONE = b"data: [DONE]"


@dataclass
class Stats:
    started: int = 0
    completed: int = 0
    errors: int = 0
    events: int = 0
    bytes: int = 0
    ttfe: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    gaps: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    latency: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    at: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]  # read times
    error_kinds: dict[str, int] = field(default_factory=dict)
    # Loop mode: nothing read after the end of the run is counted (time.time()). The streams
    # still open then are cancelled with the loop's shutdown, which holds the loop for tens of
    # ms: what they read meanwhile would time this process's teardown, not the relay.
    until: float = float("inf")

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


class SSEStream(asyncio.Protocol):
    """One streaming request on its own connection; scans raw bytes, never decodes chunking."""

    def __init__(self, request: bytes, stats: Stats, done: asyncio.Future[None],
                 rcvbuf: int = 0, read_rate: int = 0) -> None:
        self.request, self.stats, self.done = request, stats, done
        self.rcvbuf, self.read_rate = rcvbuf, read_rate
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.head = False
        self.finished = False
        self.t0 = 0.0
        self.last = 0.0
        self.budget = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stats.started += 1
        self.t0 = time.time()
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if now > self.stats.until:
            return
        self.stats.bytes += len(data)
        buf = self.buf + data if self.buf else data
        if not self.head:
            after = self._after_head(buf)
            if after is None:
                return
            buf = after
        pos = self._events(buf, now)
        if pos is None:
            return
        self.buf = buf[pos:]
        if self.read_rate:
            self.budget -= len(data)
            if self.budget < 0 and self.transport is not None:
                self.transport.pause_reading()

    def _after_head(self, buf: bytes) -> bytes | None:
        """What follows the response head, once it is whole and a 200 (else None: kept for
        the next read, or the stream finished with the status as its error)."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return None
        if buf[9:12] != b"200":
            self._finish(f"status {buf[9:12].decode(errors='replace')}")
            return None
        self.head = True
        return buf[end + 4:]

    def _events(self, buf: bytes, now: float) -> int | None:
        """Count the whole ``data:`` lines in ``buf`` read at ``now``; return where the
        unread rest starts, or None when the stream ended ([DONE] or an error event)."""
        stats, pos = self.stats, 0
        while (i := buf.find(DATA, pos)) >= 0:
            nl = buf.find(b"\n", i)
            if nl < 0:
                break
            if self.last:
                stats.gaps.append(now - self.last)
            else:
                stats.ttfe.append(now - self.t0)
            self.last = now
            stats.events += 1
            j = buf.find(MARK, i, nl)
            if j >= 0:
                k = buf.find(b"}", j)
                stats.latency.append(now - float(buf[j + len(MARK):k]))
                stats.at.append(now)
            elif buf.startswith(DONE, i):
                stats.events -= 1  # [DONE] is the end marker, not an event
                self._finish(None)
                return None
            elif buf.find(b'"error"', i, nl) >= 0:
                self._finish("error event")
                return None
            pos = nl + 1
        return pos

    def refill(self, amount: int) -> None:
        """Slow-reader mode: allow ``amount`` more bytes and resume reading."""
        self.budget = min(self.budget + amount, amount)
        if self.budget > 0 and self.transport is not None and not self.finished:
            self.transport.resume_reading()

    def _finish(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if error is None:
            self.stats.completed += 1
        else:
            self.stats.error(error)
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self._finish("closed early" if exc is None else type(exc).__name__)


HEADERS: dict[str, str] = {}  # sent with every request (--header: a relay's key, LiteLLM's)


def request_bytes(url: str, tokens: int, delay_ms: int, stamps: bool = True,
                  extra_headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    body = json.dumps({"model": "mock-gpt", "stream": True, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"host": parts.netloc, "content-type": "application/json",
               "content-length": str(len(body)), "accept": "text/event-stream"}
    if delay_ms:
        headers["x-mock-delay-ms"] = str(delay_ms)
    if stamps:
        headers["x-mock-timestamps"] = "1"
    headers.update({**HEADERS, **(extra_headers or {})})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


async def run_stream(host: str, port: int, request: bytes, stats: Stats, start_at: float,
                     rcvbuf: int = 0, read_rate: int = 0, streams: list[SSEStream] | None = None
                     ) -> None:
    """One stream at ``start_at`` (loop time), read to its end; with ``streams``, its protocol
    is added there (slow-reader mode refills them)."""
    loop = asyncio.get_running_loop()
    delay = start_at - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
    done: asyncio.Future[None] = loop.create_future()
    proto = SSEStream(request, stats, done, rcvbuf, read_rate)
    sock = None
    if rcvbuf:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
    try:
        if sock is not None:
            await loop.create_connection(lambda: proto, sock=sock)
        else:
            await loop.create_connection(lambda: proto, host, port)
    except OSError as exc:
        stats.error(f"connect: {exc.strerror or exc}")
        return
    if streams is not None:
        streams.append(proto)
    await done


def _progress(stats: Stats, t0: float, label: str) -> str:
    elapsed = time.monotonic() - t0
    open_ = stats.started - stats.completed - stats.errors
    return (f"\r{label} {elapsed:6.1f}s open {open_:6d} done {stats.completed:7d} "
            f"errors {stats.errors:4d} events {stats.events:9d} "
            f"({stats.events / max(elapsed, 1e-9):9,.0f}/s)")


async def _reporter(stats: Stats, t0: float, label: str, enabled: bool) -> None:
    while enabled:
        await asyncio.sleep(1.0)
        print(_progress(stats, t0, label), end="", file=sys.stderr, flush=True)


async def run_once(url: str, streams: int, tokens: int, delay_ms: int, ramp: float,
                   timeout: float, progress: bool = False) -> tuple[Stats, float]:
    """``streams`` concurrent streams, started evenly over ``ramp`` seconds; each is read to its
    end. Returns the stats and the wall time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(url, tokens, delay_ms)
    stats = Stats()
    loop = asyncio.get_running_loop()
    t0, start = time.monotonic(), loop.time()
    reporter = asyncio.ensure_future(_reporter(stats, t0, "load", progress))
    tasks = [run_stream(host, port, request, stats, start + ramp * i / streams)
             for i in range(streams)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    except TimeoutError:
        stats.error("timeout")
    reporter.cancel()
    gc.enable()
    if progress:
        print(_progress(stats, t0, "load"), file=sys.stderr)
    return stats, time.monotonic() - t0


async def run_for(url: str, streams: int, tokens: int, delay_ms: int, duration: float,
                  progress: bool = True, ramp: float | None = None) -> tuple[Stats, float]:
    """Keep ``streams`` streams open for ``duration`` seconds, starting a new one as each ends.
    Their first starts are spread over ``ramp`` seconds (by default a tenth of ``duration``, at
    most 1 s); a ramp as long as one stream keeps starts and ends steady instead of in waves."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(url, tokens, delay_ms)
    stats = Stats()
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    deadline = loop.time() + duration
    stats.until = time.time() + duration

    async def worker(offset: float) -> None:
        start = loop.time() + offset
        while loop.time() < deadline:
            await run_stream(host, port, request, stats, start)
            start = 0

    # (No garbage collection while it runs: a collection's pause would be counted as the
    # relay's latency. What a bounded run allocates is bounded.)
    gc.collect()
    gc.disable()
    reporter = asyncio.ensure_future(_reporter(stats, t0, "load", progress))
    spread = ramp if ramp is not None else min(1.0, duration / 10)
    workers = [asyncio.ensure_future(worker(spread * i / streams))
               for i in range(streams)]
    await asyncio.sleep(duration)
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    reporter.cancel()
    gc.enable()
    if progress:
        print(_progress(stats, t0, "load"), file=sys.stderr)
    return stats, time.monotonic() - t0


async def run_slow_readers(url: str, clients: int, tokens: int, rate: int, duration: float
                           ) -> Stats:
    """``clients`` streams read at ``rate`` bytes/s each (small receive buffers) for
    ``duration`` seconds, then closed: the relay must hold their excess, or push it back."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_bytes(url, tokens, 0, stamps=False)
    stats = Stats()
    protos: list[SSEStream] = []
    loop = asyncio.get_running_loop()
    tasks = [asyncio.ensure_future(run_stream(host, port, request, stats, loop.time(), 4096,
                                              rate, protos)) for _ in range(clients)]
    end = loop.time() + duration
    while loop.time() < end:
        await asyncio.sleep(0.1)
        for p in protos:
            p.refill(rate // 10)
    for p in protos:
        p._finish(None)
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


def summary(stats: Stats, wall: float) -> dict[str, Any]:
    def pct(values: Any, q: float) -> float | None:
        return ms(percentile(values, q))

    return {
        "streams_started": stats.started, "streams_completed": stats.completed,
        "errors": stats.errors, "error_kinds": stats.error_kinds, "events": stats.events,
        "bytes": stats.bytes, "wall_s": round(wall, 3),
        "events_per_s": round(stats.events / wall, 1) if wall else 0,
        "ttfe_ms": {"p50": pct(stats.ttfe, 50), "p99": pct(stats.ttfe, 99)},
        "gap_ms": {"p50": pct(stats.gaps, 50), "p99": pct(stats.gaps, 99)},
        "latency_ms": {"p50": pct(stats.latency, 50), "p99": pct(stats.latency, 99),
                       "max": pct(stats.latency, 100)},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="base URL of the relay, e.g. http://127.0.0.1:8080")
    ap.add_argument("--streams", type=int, default=100, help="concurrent streams")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds to run (loop mode)")
    ap.add_argument("--once", action="store_true",
                    help="run each stream once to its end instead of looping for --duration")
    ap.add_argument("--tokens", type=int, default=100, help="content chunks per stream")
    ap.add_argument("--delay-ms", type=int, default=50, help="mock pause between events")
    ap.add_argument("--ramp", type=float, default=None,
                    help="spread stream starts over this many seconds (default: one delay with "
                    "--once, else a tenth of --duration, at most 1 s)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--slow-rate", type=int, default=0,
                    help="slow-reader mode: each stream reads this many bytes/s for --duration")
    ap.add_argument("--json", help="also write the summary to this file")
    ap.add_argument("--latencies", metavar="FILE",
                    help="write every timestamped event's read time and latency to FILE "
                    "(JSON: {\"at\": [unix s], \"latency\": [s]})")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    ap.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                    help="a header for every request (repeatable)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for item in args.header:
        name, _, value = item.partition(":")
        HEADERS[name.strip().lower()] = value.strip()
    if args.loop == "uvloop":
        import uvloop

        stats, wall = uvloop.run(run(args))
    else:
        stats, wall = asyncio.run(run(args))
    result = summary(stats, wall)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    if args.latencies:
        with open(args.latencies, "w") as f:
            json.dump({"at": stats.at.tolist(), "latency": stats.latency.tolist()}, f)
    print(summary_text(result))


async def run(args: argparse.Namespace) -> tuple[Stats, float]:
    """The load the flags ask for: slow readers, each stream once, or streams for a time."""
    ramp = args.ramp if args.ramp is not None else max(args.delay_ms / 1000, 0.1)
    if args.slow_rate:
        t0 = time.monotonic()
        slow = await run_slow_readers(args.url, args.streams, args.tokens, args.slow_rate,
                                      args.duration)
        return slow, time.monotonic() - t0
    if args.once:
        return await run_once(args.url, args.streams, args.tokens, args.delay_ms, ramp,
                              args.timeout, not args.no_progress)
    return await run_for(args.url, args.streams, args.tokens, args.delay_ms, args.duration,
                         not args.no_progress, args.ramp)


def summary_text(r: dict[str, Any]) -> str:
    """The summary as this command prints it."""
    lines = [f"streams {r['streams_completed']}/{r['streams_started']} completed, "
             f"{r['errors']} errors {r['error_kinds'] or ''}",
             f"events {r['events']} in {r['wall_s']} s = {r['events_per_s']:,.0f} events/s, "
             f"{r['bytes'] / 1e6:.1f} MB",
             f"time to first event ms: p50 {r['ttfe_ms']['p50']} p99 {r['ttfe_ms']['p99']}",
             f"inter-event gap ms:     p50 {r['gap_ms']['p50']} p99 {r['gap_ms']['p99']}"]
    if r["latency_ms"]["p50"] is not None:
        lat = r["latency_ms"]
        lines.append(f"upstream->client latency ms: p50 {lat['p50']} p99 {lat['p99']} "
                     f"max {lat['max']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
