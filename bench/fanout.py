"""Benchmark F (fan-out): one publish, many subscribers, against nginx + nchan and a Python hub.

    python -m bench.fanout                       # every hub, F1 + F2 (3 rounds) + F-stall
    python -m bench.fanout --quick               # 2,000 subscribers, 5 s windows, ~2 min
    python -m bench.fanout --hubs nchan,starlette --scenarios F1 --subscribers 5000 --duration 10

Hubs, each started fresh for every scenario, pinned to CPU 0 (this runner, its load generator
and redis-cli to CPU 1; a hub's redis-server shares the hub's CPU):

relay        ``python -m relay serve --max-connections <open-file limit - 100>`` (its default
             10,000 is below F1's subscribers plus publishers): ``GET /events/{channel}``
             subscribes, ``POST /events/{channel}`` publishes
relay-redis  the same with ``--redis``: channels shared through a redis-server (F1 only)
nchan        nginx, one worker, with the nchan module (bench/peers/nchan.conf)
starlette    FastAPI + sse-starlette on uvicorn, a Redis broadcast
             (bench/peers/starlette_channels.py)

Scenarios (deliveries: events read by subscribers; --rate is in deliveries per second, 30,000
by default: nchan's F2 saturates its core near 45,000 on a 2-core machine):

F1       N subscribers (10,000) on one channel, then publishes at --rate / N per second
F2       C channels x K subscribers (1,000 x 10), publishes spread round-robin over the
         channels at the same total delivery rate (--rate / K publishes per second)
F-stall  the relay only: the per-event p99 of 200 LLM streams relayed from its built-in mock
         (bench.loadgen in a second process, at real-time priority) while F1's subscribers are
         published to, against the same streams' p99 while they are not: publishing goes on
         and off in 2 s windows (--duration / 2 of each) with the streams running throughout,
         so both sides share the host's moments (its steal: --duration's steal_pct)

Every event's data is ~200 bytes starting with the publisher's time.time() when it sent the
POST, so each subscriber computes publish->delivery latency as it reads the event. The load
generator holds every subscriber socket itself (uvloop protocols; it only looks for ``data: ``
and parses the timestamp after it, never decodes chunking) and stops by itself: connects,
windows and drains are all bounded. Publishers are keep-alive connections that each wait for
their answer: a hub that cannot keep up gets fewer publishes (the achieved rate is reported)
rather than an unbounded backlog. Latencies include the load generator's own turn: it reads
one publish's 10,000 sockets one after the other (~20 us each, kernel included).

F1 and F2 run ``--rounds`` times (3), the hubs taking turns (nchan, relay, ..., then again),
and each figure in the table is the median of a hub's rounds: one 20 s window of one hub
against one of another, minutes apart, compared whatever the shared host did in each (its
pauses of several ms decide a p99); turns and medians compare the hubs over the same stretch
of time. Each round's figures are kept in the JSON (``rounds``) and its ratios in the notes.

Hub CPU is user+system of its process tree from /proc over the window (first publish to the
last delivery, or 5 s after the last publish); the cores' busy % (from /proc/stat, softirq
included) shows which side was the limit. RSS per idle subscriber is (RSS with all connected
and idle - RSS before) / N. Results: bench/results/fanout.md and fanout.json (``--quick``:
fanout-quick.*, so a try never replaces the report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
import traceback
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .procs import Proc, ProcExited, cpu_sets, free_port, wait_port

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
HUBS = ("relay", "relay-redis", "nchan", "starlette")
SCENARIOS = ("F1", "F2", "F-stall")
DATA = b"data: "
TS_LEN = 17  # "%.6f" of time.time(): 10 digits, a dot, 6 digits (until the year 2286)
# Bytes kept across reads: a "data: " and its timestamp split by a read boundary.
KEEP = len(DATA) + TS_LEN - 1
STREAM_S = 5.0  # F-stall's LLM streams: 100 tokens, 50 ms apart
WINDOW_S = 2.0  # F-stall: publishing on for this long, then off for as long, and again
DRAIN_S = 1.0  # F-stall: after a window, its last publishes are still being delivered
FD_RESERVE = 1000  # sockets besides the subscribers: publishers, F-stall's streams, redis
P = TypeVar("P", bound=asyncio.Protocol)


class HubMissing(Exception):
    """The hub's tool is not here (or the relay has no channel endpoints yet)."""


def _wait_ready(proc: Proc, port: int) -> None:
    """procs.wait_port, with a process that exits at start (a flag it lacks) as missing."""
    try:
        wait_port(port, proc=proc)
    except ProcExited as exc:
        raise HubMissing(str(exc)) from exc


# -- parsing and statistics (tests/bench/test_fanout.py) -------------------------------------

@dataclass
class Tally:
    """Everything the subscribers saw; ``live[c]``: subscribers connected to channel c."""

    channels: int = 1
    received: int = 0
    bad: int = 0  # a "data: " line whose timestamp did not parse
    subscribed: int = 0
    drops: int = 0  # connections lost after their 200, before we closed them
    closing: bool = False
    latency: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    live: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.live = [0] * self.channels

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def event_data(size: int, now: float | None = None) -> bytes:
    """An event's data: the send time first (what subscribers parse), padded to ``size``."""
    stamp = b"%.6f" % (time.time() if now is None else now)
    assert len(stamp) == TS_LEN
    return stamp + b" " + b"x" * max(0, size - TS_LEN - 1)


def scan(buf: bytes, now: float, tally: Tally) -> int:
    """Count the events in ``buf`` and their latencies; return where the unread tail starts.

    Only ``data: `` and the timestamp after it are looked at: ids, event names, heartbeats,
    ``retry:`` and chunk-size lines never contain that. The tail kept for the next read is
    the end of ``buf`` that may hold the start of a split ``data: <timestamp>``, from its
    first ``d`` (the padding has none, so after a whole event nothing is kept)."""
    pos = 0
    while (i := buf.find(DATA, pos)) >= 0:
        end = i + len(DATA) + TS_LEN
        if end > len(buf):
            return i
        try:
            tally.latency.append(now - float(buf[i + len(DATA):end]))
        except ValueError:
            tally.bad += 1
        tally.received += 1
        pos = end
    j = buf.find(b"d", max(pos, len(buf) - KEEP))
    return len(buf) if j < 0 else j


def parse_response(buf: bytes) -> tuple[int, int] | None:
    """(status, end of the response) of the HTTP/1.1 response at the start of ``buf``, or None
    while it is incomplete. Content-Length and chunked bodies; a close-delimited body is taken
    as empty (no hub answers a publish that way)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = buf[:head_end].split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    pos = head_end + 4
    if not chunked:
        return (status, pos + length) if len(buf) >= pos + length else None
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        size = int(buf[pos:nl].split(b";")[0], 16)
        if size == 0:  # no trailers from these hubs: the terminating CRLF follows at once
            return (status, nl + 4) if len(buf) >= nl + 4 else None
        pos = nl + 2 + size + 2
        if pos > len(buf):
            return None


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (as bench.loadgen), one sort for all of ``qs``."""
    if not len(values):
        return [None for _ in qs]
    ordered = sorted(values)
    return [float(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]) for q in qs]


def count_redis_clients(client_list: str) -> int:
    """Connections in ``CLIENT LIST`` output, less redis-cli's own (the one running it)."""
    return sum(1 for line in client_list.splitlines()
               if line.strip() and "cmd=client|list" not in line and "cmd=client " not in line)


# -- the load: subscribers and publishers -----------------------------------------------------

class Subscriber(asyncio.Protocol):
    """One subscriber connection; ``ready`` resolves with the response status."""

    def __init__(self, request: bytes, channel: int, tally: Tally,
                 ready: asyncio.Future[int]) -> None:
        self.request, self.channel, self.tally, self.ready = request, channel, tally, ready
        self.transport: asyncio.Transport | None = None
        self.head = False
        self.tail = b""
        self.received = 0  # this subscriber's events: who missed what

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.tail + data if self.tail else data
        if not self.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.tail = buf
                return
            status = int(buf[9:12])
            if not self.ready.done():
                self.ready.set_result(status)
            if status != 200:
                self.close()
                return
            self.head = True
            self.tally.subscribed += 1
            self.tally.live[self.channel] += 1
            buf = buf[end + 4:]
        before = self.tally.received
        keep = scan(buf, now, self.tally)
        self.received += self.tally.received - before
        self.tail = buf[keep:] if keep < len(buf) else b""

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the response"))
        if self.head:
            self.head = False
            self.tally.live[self.channel] -= 1
            if not self.tally.closing:
                self.tally.drops += 1


class Publisher(asyncio.Protocol):
    """One keep-alive publishing connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is not None:
            self.buf = self.buf[parsed[1]:]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(parsed[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("publisher connection lost"))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@dataclass
class Hub:
    """A started hub: its process, its port and its redis-server when it has one."""

    name: str
    proc: Proc
    port: int
    cpus: set[int]  # the hub's (and its redis-server's)
    load_cpus: set[int]  # this process's
    redis: Proc | None = None
    redis_port: int | None = None

    @property
    def nchan(self) -> bool:
        return self.name == "nchan"

    def sub_request(self, channel: str) -> bytes:
        path = f"/sub/{channel}" if self.nchan else f"/events/{channel}"
        return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Accept: text/event-stream\r\n\r\n").encode()

    def pub_request(self, channel: str, data: bytes) -> bytes:
        if self.nchan:  # nchan publishes the body as the event's data
            path, body, ctype = f"/pub/{channel}", data, "text/plain"
        else:  # data is ASCII digits and padding: no JSON escaping needed
            path, body, ctype = f"/events/{channel}", b'{"data": "' + data + b'"}', \
                "application/json"
        return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    def stop(self) -> None:
        self.proc.stop()
        if self.redis is not None:
            self.redis.stop()


def _factory(proto: P) -> Callable[[], P]:
    """A protocol factory answering ``proto`` (the loop's create_connection wants one)."""
    return lambda: proto


async def connect_subscribers(hub: Hub, names: list[str], per_channel: int, tally: Tally,
                              timeout: float) -> list[Subscriber]:
    """``per_channel`` subscribers on each channel, at most 256 connecting at once (a 10k storm
    overflows accept queues; SYN retries would then dominate)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(256)
    subs: list[Subscriber] = []
    deadline = loop.time() + timeout

    async def one(index: int) -> None:
        request = hub.sub_request(names[index])
        async with gate:
            for _ in range(3):  # a refused connect is retried: the backlog was full
                ready: asyncio.Future[int] = loop.create_future()
                sub = Subscriber(request, index, tally, ready)
                try:
                    await loop.create_connection(_factory(sub), "127.0.0.1", hub.port)
                    status = await asyncio.wait_for(ready, max(0.1, deadline - loop.time()))
                except (OSError, TimeoutError) as exc:
                    tally.error(f"connect: {type(exc).__name__}")
                    sub.close()
                    await asyncio.sleep(0.1)
                    continue
                subs.append(sub)
                if status != 200:
                    tally.error(f"subscribe status {status}")
                return

    await asyncio.gather(*(one(c) for c in range(len(names)) for _ in range(per_channel)))
    return subs


@dataclass
class Published:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    expected: int = 0  # deliveries: live subscribers of each published channel, summed
    seconds: float | None = None  # spent publishing, when not the whole window

    def add(self, other: Published) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.errors += other.errors
        self.expected += other.expected


async def publish(hub: Hub, names: list[str], rate: float, duration: float, size: int,
                  tally: Tally) -> Published:
    """``rate`` publishes per second for ``duration`` seconds, round-robin over the channels,
    from a few keep-alive connections (a slow hub then gets fewer publishes, never a backlog
    of them: the achieved rate is reported)."""
    loop = asyncio.get_running_loop()
    # Each connection waits for its answer: enough of them that 40 ms round trips (this loop
    # is busy reading subscribers) do not cap the rate; a saturated hub still sees few at once.
    workers = max(2, min(256, int(rate // 25)))
    total = max(1, int(rate * duration))
    out = Published()
    start = loop.time() + 0.05
    stop_at = start + duration

    async def worker(w: int) -> None:
        conn: Publisher | None = None
        for i in range(w, total, workers):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() > stop_at:
                break
            channel = i % len(names)
            live = tally.live[channel]
            out.sent += 1
            try:
                if conn is None or conn.lost:
                    conn = Publisher()
                    await loop.create_connection(_factory(conn), "127.0.0.1", hub.port)
                status = await asyncio.wait_for(
                    conn.send(hub.pub_request(names[channel], event_data(size))), 10)
            except (OSError, TimeoutError):
                out.errors += 1
                conn = None
                continue
            if 200 <= status < 300:
                out.ok += 1
                out.expected += live
            else:
                out.errors += 1
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return out


# -- hubs --------------------------------------------------------------------------------------

def hub_missing(name: str) -> str | None:
    """Why ``name`` cannot run here (None when it can); the relay's endpoints are probed later."""
    needs_redis = name in ("relay-redis", "starlette")
    if needs_redis and (shutil.which("redis-server") is None or shutil.which("redis-cli") is None):
        return "redis-server / redis-cli not installed (apt-get install redis-server)"
    if name == "nchan":
        if shutil.which("nginx") is None:
            return "nginx not installed (apt-get install nginx)"
        if not NCHAN_MODULE.exists():
            return f"{NCHAN_MODULE} missing (apt-get install libnginx-mod-nchan)"
    if name == "starlette":
        for mod in ("fastapi", "sse_starlette", "uvicorn", "redis"):
            if importlib.util.find_spec(mod) is None:
                return f"python package {mod} not installed (pip install fastapi sse-starlette " \
                       "uvicorn 'redis[hiredis]')"
    return None


def nchan_conf(port: int, prefix: Path) -> Path:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    text = (HERE / "peers" / "nchan.conf").read_text()
    for key, value in {"PREFIX": prefix, "PORT": port, "NOFILE": hard,
                       "CONNECTIONS": hard - 100}.items():
        text = text.replace("{" + key + "}", str(value))
    conf = prefix / "nchan.conf"
    conf.write_text(text)
    return conf


def start_hub(name: str, cpus: tuple[set[int], set[int]], workdir: Path) -> Hub:
    """Start ``name`` on ``cpus[0]`` (``cpus``: procs.cpu_sets() taken before this process
    pinned itself to the load CPUs, after which it would answer the load CPUs twice)."""
    port = free_port()
    redis = redis_port = None
    if name in ("relay-redis", "starlette"):
        redis_port = free_port()
        redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no"], cpus[0], workdir / "redis.log")
        _wait_ready(redis, redis_port)
    url = f"redis://127.0.0.1:{redis_port}/0"
    log = workdir / f"{name}.log"
    if name in ("relay", "relay-redis"):
        # --max-connections: its default (10,000) is below F1's subscribers plus publishers;
        # raised like nginx's worker_connections, to what the open-file limit allows.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        argv = [sys.executable, "-m", "relay", "serve", "--port", str(port), "--access-log",
                "off", "--log-level", "warning", "--max-connections", str(hard - 100),
                *(["--redis", url] if redis else [])]
    elif name == "nchan":
        prefix = workdir / "nchan"
        prefix.mkdir(exist_ok=True)
        argv = ["nginx", "-e", str(prefix / "error.log"), "-c", str(nchan_conf(port, prefix)),
                "-p", str(prefix)]
    else:
        argv = [sys.executable, "-m", "bench.peers.starlette_channels", "--port", str(port),
                "--redis", url]
    proc = Proc(argv, cpus[0], log)
    hub = Hub(name, proc, port, cpus[0], cpus[1], redis, redis_port)
    try:
        _wait_ready(proc, port)
        probe(hub)
    except BaseException:
        hub.stop()
        raise
    return hub


def probe(hub: Hub) -> None:
    """One subscribe request: a relay without channel endpoints answers 404 (MISSING)."""
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as s:
        s.sendall(hub.sub_request("probe"))
        head = s.recv(64)
    status = int(head[9:12]) if head.startswith(b"HTTP/1.") else 0
    if status == 404 and hub.name.startswith("relay"):
        raise HubMissing("GET /events/{channel} answers 404: no channel endpoints yet")
    if status != 200:
        raise RuntimeError(f"subscribe probe answered {head[:40]!r}")


async def redis_clients(hub: Hub) -> int | None:
    if hub.redis_port is None:
        return None
    proc = await asyncio.create_subprocess_exec(
        "redis-cli", "-p", str(hub.redis_port), "CLIENT", "LIST",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return count_redis_clients(out.decode(errors="replace"))


# -- scenarios ---------------------------------------------------------------------------------

@dataclass
class Load:
    channels: int
    per_channel: int
    rate: float  # deliveries per second
    duration: float
    size: int
    idle: float  # seconds connected and idle before RSS is read

    @property
    def publish_rate(self) -> float:
        return self.rate / self.per_channel


async def warm_up(hub: Hub, size: int, names: list[str]) -> None:
    """One subscriber, one publish, read: lazy imports and first allocations happen before the
    baseline RSS is read, not inside the per-subscriber figure. Then one publish to each of
    ``names``, still without subscribers, so the window measures the steady state: each hub
    has met every channel (nchan's channel, the relay's history, and the relay's known head
    for each channel's POST: a channel's first publish is parsed in full, ~0.25 ms more, and
    F2's 1,000 of them in the window's first 0.3 s held the relay's loop for ~250 ms)."""
    tally = Tally()
    subs = await connect_subscribers(hub, ["warm"], 1, tally, 10)
    await asyncio.sleep(0.3)
    await publish(hub, ["warm"], 20, 0.1, size, tally)
    for _ in range(50):
        if tally.received:
            break
        await asyncio.sleep(0.1)
    tally.closing = True
    for sub in subs:
        sub.close()
    rate = 1000.0
    await publish(hub, names, rate, len(names) / rate, size, Tally(channels=len(names)))
    await asyncio.sleep(0.3)


PublishFn = Callable[[list[str], "Tally"], Awaitable["Published"]]


async def fanout(hub: Hub, load: Load, alongside: Awaitable[Any] | None = None,
                 publisher: PublishFn | None = None) -> dict[str, Any]:
    """Connect the subscribers, let them idle, publish for ``load.duration`` (or as
    ``publisher`` does), drain; with ``alongside``, that runs during the window too (F-stall's
    LLM streams)."""
    loop = asyncio.get_running_loop()
    names = ["f1"] if load.channels == 1 else [f"c{c}" for c in range(load.channels)]
    await warm_up(hub, load.size, names)
    rss0 = hub.proc.rss_bytes()
    n = load.channels * load.per_channel
    tally = Tally(channels=load.channels)
    t0 = loop.time()
    subs = await connect_subscribers(hub, names, load.per_channel, tally, max(30, n / 200))
    connect_s = loop.time() - t0
    await asyncio.sleep(load.idle)
    # No garbage collection in this process during the window: its collections paused this
    # reader for 16-60 ms (gc.callbacks), and those pauses made the slowest 1% of deliveries,
    # for every hub: they timed the reader, not the hub. What a window allocates is bounded.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await _window(hub, load, names, tally, subs, connect_s, rss0, alongside,
                             publisher)
    finally:
        gc.enable()
        gc.unfreeze()


async def _window(hub: Hub, load: Load, names: list[str], tally: Tally, subs: list[Subscriber],
                  connect_s: float, rss0: int, alongside: Awaitable[Any] | None,
                  publisher: PublishFn | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n = load.channels * load.per_channel
    rss1, clients = hub.proc.rss_bytes(), await redis_clients(hub)
    hub_cpus, load_cpus = hub.cpus, hub.load_cpus
    cpu0, redis0, own0 = hub.proc.cpu_seconds(), _cpu(hub.redis), time.process_time()
    hub_core0, load_core0 = core_ticks(hub_cpus), core_ticks(load_cpus)
    t1 = loop.time()
    side = asyncio.ensure_future(alongside) if alongside is not None else None
    if publisher is None:
        pub = await publish(hub, names, load.publish_rate, load.duration, load.size, tally)
    else:
        pub = await publisher(names, tally)
    publish_s = pub.seconds if pub.seconds is not None else loop.time() - t1
    drain_until = loop.time() + 5
    while tally.received < pub.expected and loop.time() < drain_until:
        await asyncio.sleep(0.02)
    window = loop.time() - t1
    cpu, redis_cpu = hub.proc.cpu_seconds() - cpu0, _cpu(hub.redis) - redis0
    own = time.process_time() - own0
    hub_core1, load_core1 = core_ticks(hub_cpus), core_ticks(load_cpus)
    hub_core, load_core = _busy_pct(hub_core0, hub_core1), _busy_pct(load_core0, load_core1)
    steal = _busy_pct((0, hub_core0[1] + load_core0[1], hub_core0[2] + load_core0[2]),
                      (0, hub_core1[1] + load_core1[1], hub_core1[2] + load_core1[2]), 2)
    side_result = await side if side is not None else None
    alive = hub.proc.alive()
    tally.closing = True
    for sub in subs:
        sub.close()
    await asyncio.sleep(0.5)
    if not alive:
        raise RuntimeError(f"{hub.name} died during the run")
    p50, p99, pmax = percentiles(tally.latency, (50, 99, 100))
    got = tally.received
    most = [0] * load.channels  # events on each channel's best-served subscriber
    for sub in subs:
        most[sub.channel] = max(most[sub.channel], sub.received)
    short = [most[sub.channel] - sub.received for sub in subs if sub.received < most[sub.channel]]

    def per_1m(seconds: float) -> float | None:
        return round(seconds / got * 1e6, 3) if got else None

    row: dict[str, Any] = {
        "channels": load.channels, "per_channel": load.per_channel,
        "subscribers_requested": n, "subscribers": tally.subscribed,
        "connect_s": round(connect_s, 2), "subscribe_errors": tally.errors,
        "rate_target": load.rate, "publish_rate_target": load.publish_rate,
        "publishes": pub.ok, "publish_errors": pub.errors,
        "publish_rate": round(pub.ok / publish_s, 1),
        "deliveries_expected": pub.expected, "deliveries": got,
        "lost": pub.expected - got, "drops": tally.drops, "bad_events": tally.bad,
        # Subscribers that got fewer events than the best-served one on their channel.
        "short_subscribers": len(short), "short_events": sum(short),
        "window_s": round(window, 2), "deliveries_per_s": round(got / window),
        "cpu_s": round(cpu, 3), "cpu_s_per_1m": per_1m(cpu),
        "redis_cpu_s_per_1m": per_1m(redis_cpu) if hub.redis else None,
        "latency_p50_ms": _ms(p50), "latency_p99_ms": _ms(p99), "latency_max_ms": _ms(pmax),
        "rss_before_mib": round(rss0 / 2**20, 1), "rss_idle_mib": round(rss1 / 2**20, 1),
        "rss_per_sub_kib": round((rss1 - rss0) / max(tally.subscribed, 1) / 1024, 2),
        "redis_clients": clients, "loadgen_cpu_pct": round(own / window * 100, 1),
        "hub_core_busy_pct": hub_core, "load_core_busy_pct": load_core, "steal_pct": steal,
    }
    if side_result is not None:
        row["alongside"] = side_result
    return row


def core_ticks(cpus: set[int]) -> tuple[int, int, int]:
    """(busy, total, steal) ticks of ``cpus`` from /proc/stat. Busy includes softirq time,
    which no process is charged for: on loopback the receiving side's TCP work lands there.
    Steal is time the virtual machine's host ran something else: none of ours, and while it
    lasts every process here is late (on this shared host it has been 2-35% of a window)."""
    busy = total = steal = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4] - ticks[7]
            steal += ticks[7]
    return busy, total, steal


def _busy_pct(before: tuple[int, int, int], after: tuple[int, int, int], which: int = 0
              ) -> float | None:
    total = after[1] - before[1]
    return round((after[which] - before[which]) / total * 100, 1) if total else None


def _cpu(proc: Proc | None) -> float:
    return proc.cpu_seconds() if proc is not None else 0.0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def llm_streams(hub: Hub, streams: int, duration: float, workdir: Path, tag: str
                      ) -> dict[str, Any]:
    """``streams`` relayed LLM streams (100 tokens, 50 ms apart, timestamped by the mock) kept
    open for ``duration`` s by bench.loadgen in its own process: its loop is not the one
    reading 10,000 subscribers. Also every token's read time (``at``) and latency."""
    out, events = workdir / f"llm-{tag}.json", workdir / f"llm-{tag}-events.json"
    # Starts spread over one stream's length (100 x 50 ms): streams start and end at a steady
    # 40/s, not in waves of 200 (a wave's 200 ends in 0.5 s were most of the slowest 1%).
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", f"http://127.0.0.1:{hub.port}", "--no-progress",
        "--streams", str(streams), "--duration", str(duration), "--tokens", "100",
        "--delay-ms", "50", "--ramp", str(STREAM_S), "--json", str(out),
        "--latencies", str(events),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_raise_priority)
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


def _raise_priority() -> None:
    """Ahead of the subscribers' reader on the load CPU: the measurement is of the relay's
    delay, not of this machine's scheduler. SCHED_FIFO: woken by a token, the client runs at
    once, never after a slice of the reader (which holds the load CPU ~20 us per subscriber
    per publish). Its own work is small (4,000 events/s); the kernel caps it at 95% anyway."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:  # (not root: a higher nice priority, when allowed)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)


def split_by_windows(at: Sequence[float], latency: Sequence[float],
                     windows: Sequence[tuple[float, float]], drain: float
                     ) -> tuple[list[float], list[float]]:
    """(latencies read while publishing, latencies read while not): ``windows`` are the
    publishing windows (start, end), each followed by a quiet one until the next start (the
    last: as long as the one before it). A publish goes on being delivered after its window,
    so ``drain`` s after each end count as publishing. Tokens read before the first window
    (the streams' ramp) or after the last quiet one count for neither."""
    on: list[float] = []
    off: list[float] = []
    if not windows:
        return on, off
    last = windows[-1]
    edges = [*(w[0] for w in windows[1:]), last[1] + (last[1] - last[0])]
    for t, lat in zip(at, latency, strict=True):
        for (start, end), next_start in zip(windows, edges, strict=True):
            if start <= t < end + drain:
                on.append(lat)
                break
            if end + drain <= t < next_start:
                off.append(lat)
                break
    return on, off


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
    row = await fanout(hub, load, llm_streams(hub, streams, span, workdir, "stall"), in_windows)
    side = row.pop("alongside")
    on, off = split_by_windows(side["at"], side["latency"], windows, DRAIN_S)
    (on50, on99), (off50, off99) = percentiles(on, (50, 99)), percentiles(off, (50, 99))
    delta = None if on99 is None or off99 is None else _ms(on99 - off99)
    return {**row, "streams": streams, "stall_windows": pairs, "stall_window_s": WINDOW_S,
            "stall_events_publishing": len(on), "stall_events_quiet": len(off),
            "stall_errors": side["errors"], "stall_error_kinds": side["error_kinds"],
            "stall_p99_alone_ms": _ms(off99), "stall_p99_fanout_ms": _ms(on99),
            "stall_p99_delta_ms": delta,
            "stall_p50_alone_ms": _ms(off50), "stall_p50_fanout_ms": _ms(on50)}


# -- runner ------------------------------------------------------------------------------------

def plan(args: argparse.Namespace, hubs: list[str], scenarios: list[str]
         ) -> list[tuple[str, str, Load]]:
    f1 = Load(1, args.subscribers, args.rate, args.duration, args.size, args.idle)
    f2 = Load(args.channels, args.per_channel, args.rate, args.duration, args.size, args.idle)
    runs: list[tuple[str, str, Load]] = []
    for hub in hubs:
        for scenario in scenarios:
            if scenario == "F1" or (scenario == "F2" and hub != "relay-redis"):
                runs.append((hub, scenario, f1 if scenario == "F1" else f2))
            elif scenario == "F-stall" and hub == "relay":
                runs.append((hub, scenario, f1))
    return runs


def run_one(hub_name: str, scenario: str, load: Load, args: argparse.Namespace,
            workdir: Path) -> dict[str, Any]:
    import uvloop

    hub = start_hub(hub_name, args.cpus, workdir)
    try:
        if scenario == "F-stall":
            return uvloop.run(stall(hub, load, args.streams, workdir))
        return uvloop.run(fanout(hub, load))
    finally:
        hub.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hubs", default=",".join(HUBS), help=f"any of {','.join(HUBS)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="any of F1,F2,F-stall")
    ap.add_argument("--subscribers", type=int, default=10_000, help="F1: on one channel")
    ap.add_argument("--channels", type=int, default=1000, help="F2: channels")
    ap.add_argument("--per-channel", type=int, default=10, help="F2: subscribers per channel")
    ap.add_argument("--rate", type=float, default=30_000,
                    help="deliveries per second (nchan's F2 saturates near 45,000 here)")
    ap.add_argument("--duration", type=float, default=20, help="seconds of publishing")
    ap.add_argument("--size", type=int, default=200, help="bytes of data per event")
    ap.add_argument("--streams", type=int, default=200, help="F-stall: relayed LLM streams")
    ap.add_argument("--idle", type=float, default=2.0,
                    help="seconds all subscribers idle before RSS and Redis clients are read")
    ap.add_argument("--rounds", type=int, default=3,
                    help="F1 and F2 run this many times per hub, the hubs taking turns; each "
                         "figure is the median of its rounds (F-stall runs once)")
    ap.add_argument("--quick", action="store_true",
                    help="2,000 subscribers (F2: 200 x 10), 5 s windows")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.subscribers, args.channels, args.duration, args.idle = 2000, 200, 5.0, 1.0
        args.rounds = 1
    return args


def cap_subscribers(args: argparse.Namespace) -> list[str]:
    """Raise the open-file limit to its hard value (hubs inherit it); cap subscriber counts
    by it: this process holds one socket per subscriber, and so does the hub."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cap = hard - FD_RESERVE
    notes = []
    if args.subscribers > cap:
        notes.append(f"F1 ran {cap} subscribers, not {args.subscribers}: the open-file limit "
                     f"is {hard} per process")
        args.subscribers = cap
    if args.channels * args.per_channel > cap:
        args.channels = cap // args.per_channel
        notes.append(f"F2 ran {args.channels} channels: the open-file limit is {hard}")
    return notes


# -- report ------------------------------------------------------------------------------------

# (scenarios, key, label); lower is better for all but the rates
METRICS: list[tuple[tuple[str, ...], str, str]] = [
    (("F1", "F2"), "subscribers", "subscribers connected"),
    (("F1", "F2"), "publish_rate", "publishes/s achieved"),
    (("F1", "F2"), "deliveries_per_s", "deliveries/s received"),
    (("F1", "F2"), "cpu_s_per_1m", "hub CPU s per 1M deliveries"),
    (("F1", "F2"), "latency_p50_ms", "publish->delivery p50 ms"),
    (("F1", "F2"), "latency_p99_ms", "publish->delivery p99 ms"),
    (("F1", "F2"), "rss_per_sub_kib", "RSS per idle subscriber KiB"),
    (("F1", "F2"), "lost", "events lost (expected - received)"),
    (("F1", "F2"), "redis_clients", "Redis client connections"),
    (("F1", "F2"), "redis_cpu_s_per_1m", "redis-server CPU s per 1M deliveries"),
    (("F1", "F2"), "hub_core_busy_pct", "hub's core busy % (/proc/stat: anyone's, softirq too)"),
    (("F1", "F2"), "load_core_busy_pct", "load generator's core busy % (same)"),
    (("F1", "F2", "F-stall"), "steal_pct", "host steal % of both cores (a VM's; not ours)"),
    (("F-stall",), "stall_p99_alone_ms", "LLM streams per-event p99 ms, between publishes"),
    (("F-stall",), "stall_p99_fanout_ms", "LLM streams per-event p99 ms, F1 publishing"),
    (("F-stall",), "stall_p99_delta_ms", "difference ms (target <= +10)"),
    (("F-stall",), "latency_p99_ms", "fan-out publish->delivery p99 ms"),
    (("F-stall",), "lost", "fan-out events lost"),
]
COLUMNS = {"relay": "relay", "relay-redis": "relay --redis", "nchan": "nchan",
           "starlette": "starlette"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(ours: Any, theirs: Any) -> str:
    if not isinstance(ours, (int, float)) or not isinstance(theirs, (int, float)) or not theirs:
        return "-"
    return f"{ours / theirs:.2f}x"


def table(doc: dict[str, Any]) -> str:
    rows = {(r["hub"], r["scenario"]): r for r in doc["rows"]}
    hubs = [h for h in HUBS if h in doc["meta"]["hubs"]]
    head = ["scenario", "metric", *(COLUMNS[h] for h in hubs), "relay / nchan"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in [s for s in SCENARIOS if s in doc["meta"]["scenarios"]]:
        for scenarios, key, label in METRICS:
            if scenario not in scenarios:
                continue
            cells = []
            for h in hubs:
                row = rows.get((h, scenario))
                if row is None:
                    cells.append("")  # not run for this hub (relay-redis: F1 only)
                elif "missing" in row:
                    cells.append("MISSING")
                elif "failed" in row:
                    cells.append("failed")
                else:
                    cells.append(_fmt(row.get(key)))
            if all(c in ("", "-") for c in cells):
                continue
            ours = rows.get(("relay", scenario), {}).get(key)
            theirs = rows.get(("nchan", scenario), {}).get(key)
            lines.append("| " + " | ".join([scenario, label, *cells, _ratio(ours, theirs)])
                         + " |")
    meta = doc["meta"]
    a = meta["args"]
    header = (f"Benchmark F (fan-out), run {meta['started']} at {meta['git']}, {meta['cpus']} "
              f"CPUs, Python {meta['python']}. Hub pinned to one CPU, load generator to the "
              f"other. {a['rate']:,.0f} deliveries/s of {a['size']}-byte events for "
              f"{a['duration']:g} s: F1 {a['subscribers']:,} subscribers on one channel "
              f"({a['rate'] / a['subscribers']:g} publishes/s), F2 {a['channels']:,} channels x "
              f"{a['per_channel']} ({a['rate'] / a['per_channel']:,.0f} publishes/s); "
              f"F-stall: {a['streams']} relayed LLM streams (100 tokens, 50 ms apart), F1 "
              f"publishing on and off in {WINDOW_S:g} s windows.")
    notes = [f"- MISSING {h}: {why}" for h, why in meta["missing"].items()]
    notes += [f"- {r['hub']} {r['scenario']} failed: {r['failed']}" for r in doc["rows"]
              if "failed" in r]
    notes += [f"- {n}" for n in meta["notes"]]
    return "\n".join([header, "", *lines, "", *notes]).rstrip() + "\n"


def row_notes(row: dict[str, Any]) -> list[str]:
    """What a reader must know about a row: the load side busy, losses, a missed rate."""
    notes, where = [], f"{row['hub']} {row['scenario']}"
    if (row.get("load_core_busy_pct") or 0) > 90:
        notes.append(f"{where}: the load generator's core was {row['load_core_busy_pct']}% "
                     "busy: latencies include its own queueing")
    if row.get("publish_rate", 0) < 0.95 * row.get("publish_rate_target", 0):
        notes.append(f"{where}: published {row['publish_rate']}/s of "
                     f"{row['publish_rate_target']:g}/s (publishes wait for their answer)")
    if row.get("subscribers", 0) < row.get("subscribers_requested", 0):
        notes.append(f"{where}: {row['subscribers']} of {row['subscribers_requested']} "
                     f"subscribers connected ({row['subscribe_errors']})")
    if row.get("lost"):
        notes.append(f"{where}: {row['lost']} events lost; {row.get('short_subscribers')} "
                     f"subscribers got {row.get('short_events')} fewer events than the "
                     "best-served one on their channel")
    if row.get("drops"):
        notes.append(f"{where}: {row['drops']} subscriber connections dropped by the hub")
    return notes


def save(doc: dict[str, Any], out: Path, stem: str) -> str:
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    md = table(doc)
    (out / f"{stem}.md").write_text(md)
    return md


def _git_rev() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=HERE).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    hubs = [h for h in args.hubs.split(",") if h]
    wanted = {{"stall": "f-stall"}.get(w, w) for w in args.scenarios.lower().split(",") if w}
    scenarios = [s for s in SCENARIOS if s.lower() in wanted]
    unknown = (set(hubs) - set(HUBS)) | (wanted - {s.lower() for s in SCENARIOS})
    if unknown:
        raise SystemExit(f"unknown {sorted(unknown)}: hubs are {', '.join(HUBS)}, scenarios "
                         f"{', '.join(SCENARIOS)}")
    args.cpus = cpu_sets()  # before pinning: then this process sees only the load CPUs
    os.sched_setaffinity(0, args.cpus[1])  # the load (and its children) off the hub's CPU
    notes = cap_subscribers(args)
    missing = {h: why for h in hubs if (why := hub_missing(h))}
    for h, why in missing.items():
        print(f"MISSING {h}: {why}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "fanout-quick" if args.quick else "fanout"  # a quick try never replaces the report
    doc: dict[str, Any] = {"meta": {
        "started": time.strftime("%Y-%m-%dT%H-%M-%S"), "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "git": _git_rev(),
        "args": {k: v for k, v in vars(args).items() if k != "cpus"},
        "hub_cpus": sorted(args.cpus[0]), "load_cpus": sorted(args.cpus[1]), "hubs": hubs,
        "scenarios": scenarios, "missing": missing,
        "notes": notes, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }, "rows": []}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-fanout-") as tmp:
        for turn in range(max(1, args.rounds)):  # (the hubs take turns: they share the host's)
            for hub, scenario, load in plan(args, hubs, scenarios):
                if turn and scenario == "F-stall":
                    continue  # (its own A/B windows: once is enough)
                row: dict[str, Any] = {"hub": hub, "scenario": scenario}
                if hub in missing:
                    row["missing"] = missing[hub]
                else:
                    row.update(_attempt(hub, scenario, load, args, Path(tmp) / str(turn),
                                        missing))
                runs.setdefault((hub, scenario), []).append(row)
                doc["rows"] = [merge_rounds(rows) for rows in runs.values()]
                doc["meta"]["notes"] = notes + [n for r in doc["rows"] for n in row_notes(r)]
                save(doc, out, stem)  # after every run: an interrupted run keeps its figures
    doc["meta"]["notes"] += round_notes(doc["rows"])
    print()
    print(save(doc, out, stem))


ROUND_KEYS = ("cpu_s_per_1m", "latency_p50_ms", "latency_p99_ms", "hub_core_busy_pct",
              "steal_pct")
SUMMED = frozenset({"lost", "drops", "bad_events", "short_subscribers", "short_events",
                    "publish_errors", "subscribe_errors", "deliveries", "deliveries_expected",
                    "publishes"})


def merge_rounds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One hub's rounds of one scenario as one row: each figure the median of its rounds
    (counts of losses and errors summed), with each round's main figures under ``rounds``.
    A round that failed or was missing makes the row that round's."""
    bad = [r for r in rows if "missing" in r or "failed" in r]
    if bad or len(rows) == 1:
        return bad[0] if bad else rows[0]
    merged: dict[str, Any] = dict(rows[0])
    for key, value in rows[0].items():
        values = [r.get(key) for r in rows]
        if isinstance(value, bool) or not all(isinstance(v, (int, float)) for v in values):
            continue
        if key in SUMMED:
            merged[key] = sum(values)
        else:
            mid = statistics.median(values)
            merged[key] = round(mid, 3) if isinstance(mid, float) else mid
    merged["rounds"] = [{k: r.get(k) for k in ROUND_KEYS} for r in rows]
    return merged


def round_notes(rows: list[dict[str, Any]]) -> list[str]:
    """For each scenario run in rounds: the relay / nchan ratios of each round."""
    by = {(r["hub"], r["scenario"]): r for r in rows}
    notes = []
    for scenario in SCENARIOS:
        ours, theirs = by.get(("relay", scenario), {}), by.get(("nchan", scenario), {})
        if "rounds" not in ours or "rounds" not in theirs:
            continue
        parts = []
        for key, label in (("cpu_s_per_1m", "CPU"), ("latency_p99_ms", "p99")):
            ratios = [_ratio(a.get(key), b.get(key))
                      for a, b in zip(ours["rounds"], theirs["rounds"], strict=False)]
            parts.append(f"{label} {', '.join(ratios)}")
        notes.append(f"{scenario} relay / nchan by round (the table: medians of "
                     f"{len(ours['rounds'])} rounds): " + "; ".join(parts))
    return notes


def _attempt(hub: str, scenario: str, load: Load, args: argparse.Namespace, tmp: Path,
             missing: dict[str, str]) -> dict[str, Any]:
    print(f"  {hub:11} {scenario:7}", end=" ", flush=True)
    workdir = tmp / f"{hub}-{scenario}"
    workdir.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        row = run_one(hub, scenario, load, args, workdir)
    except HubMissing as exc:
        missing[hub] = str(exc)  # the relay's endpoints: later scenarios are skipped too
        row = {"missing": str(exc)}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        row = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
    keys = ("subscribers", "publish_rate", "cpu_s_per_1m", "latency_p50_ms", "latency_p99_ms",
            "rss_per_sub_kib", "lost", "redis_clients", "hub_core_busy_pct",
            "load_core_busy_pct",
            "stall_p99_alone_ms", "stall_p99_fanout_ms", "missing", "failed")
    brief = " ".join(f"{k}={row[k]}" for k in keys if row.get(k) is not None)
    print(f"{time.monotonic() - t0:5.1f}s {brief}", flush=True)
    return row


if __name__ == "__main__":
    main()
