"""Benchmark F's hubs: what each needs, how each is started and probed, and its requests."""

from __future__ import annotations

import asyncio
import importlib.util
import resource
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ..procs import Proc, ProcExited, free_port, wait_port

PEERS = Path(__file__).resolve().parents[1] / "peers"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
HUBS = ("relay", "relay-redis", "nchan", "starlette")
WITH_REDIS = ("relay-redis", "starlette")


class HubMissing(Exception):
    """The hub's tool is not here (or the relay has no channel endpoints yet)."""


def wait_ready(proc: Proc, port: int) -> None:
    """procs.wait_port, with a process that exits at start (a flag it lacks) as missing."""
    try:
        wait_port(port, proc=proc)
    except ProcExited as exc:
        raise HubMissing(str(exc)) from exc


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


def hub_missing(name: str) -> str | None:
    """Why ``name`` cannot run here (None when it can); the relay's endpoints are probed later."""
    needs_redis = name in WITH_REDIS
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
    """bench/peers/nchan.conf for ``port``, with its paths under ``prefix`` and its limits at
    the open-file limit, written into ``prefix``."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    text = (PEERS / "nchan.conf").read_text()
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
    if name in WITH_REDIS:
        redis_port = free_port()
        redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no"], cpus[0], workdir / "redis.log")
        wait_ready(redis, redis_port)
    url = f"redis://127.0.0.1:{redis_port}/0" if redis_port is not None else None
    proc = Proc(hub_argv(name, port, workdir, url), cpus[0], workdir / f"{name}.log")
    hub = Hub(name, proc, port, cpus[0], cpus[1], redis, redis_port)
    try:
        wait_ready(proc, port)
        probe(hub)
    except BaseException:
        hub.stop()
        raise
    return hub


def hub_argv(name: str, port: int, workdir: Path, redis_url: str | None) -> list[str]:
    """The command line of hub ``name`` on ``port`` (``redis_url``: its redis-server's)."""
    if name in ("relay", "relay-redis"):
        # --max-connections: its default (10,000) is below F1's subscribers plus publishers;
        # raised like nginx's worker_connections, to what the open-file limit allows.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        return [sys.executable, "-m", "relay", "serve", "--port", str(port), "--access-log",
                "off", "--log-level", "warning", "--max-connections", str(hard - 100),
                *(["--redis", redis_url] if redis_url else [])]
    if name == "nchan":
        prefix = workdir / "nchan"
        prefix.mkdir(exist_ok=True)
        return ["nginx", "-e", str(prefix / "error.log"), "-c", str(nchan_conf(port, prefix)),
                "-p", str(prefix)]
    return [sys.executable, "-m", "bench.peers.starlette_channels", "--port", str(port),
            "--redis", str(redis_url)]


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
    """The hub's Redis client connections (None without a redis-server)."""
    if hub.redis_port is None:
        return None
    proc = await asyncio.create_subprocess_exec(
        "redis-cli", "-p", str(hub.redis_port), "CLIENT", "LIST",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return count_redis_clients(out.decode(errors="replace"))


def count_redis_clients(client_list: str) -> int:
    """Connections in ``CLIENT LIST`` output, less redis-cli's own (the one running it)."""
    return sum(1 for line in client_list.splitlines()
               if line.strip() and "cmd=client|list" not in line and "cmd=client " not in line)
