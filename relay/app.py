"""Wiring: event loop choice, listening sockets, routing, the embedded mock, the banner, signals.

uvloop is imported here only, where the loop is created.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from . import __version__
from .auth import ClientAuth
from .config import Config, Limits, Origin, Timeouts
from .errors import error_body
from .headers import header_value
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .mock import MockUpstream
from .observe import AccessLog, Observer, Record, request_id
from .pool import Pool, tls_context
from .server import Exchange, Handler, ServerProtocol
from .stream import RelayStream
from .trace import Tracer
from .tuning import set_nodelay

log = logging.getLogger("relay")


@dataclass
class Listener:
    """A listening socket and the client connections it accepted (so all can be closed)."""

    server: asyncio.Server
    connections: set[ServerProtocol]

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def close(self) -> None:
        self.server.close()
        for conn in list(self.connections):
            conn.abort()

    async def drain(self, timeout: float) -> bool:
        """Stop accepting, close idle connections, let busy ones finish for up to ``timeout``
        seconds, then end what remains (SSE: a final error event). True if all finished."""
        self.server.close()  # the listening socket closes: new connections are refused
        for conn in list(self.connections):
            conn.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        clean = not self.connections
        for conn in list(self.connections):
            conn.stop()
        return clean


async def listen(
    handler: Handler,
    host: str,
    port: int,
    limits: Limits,
    timeouts: Timeouts,
    ssl_context: ssl.SSLContext | None = None,
    connections: set[ServerProtocol] | None = None,
    reuse_port: bool = False,
    tracer: Tracer | None = None,
) -> Listener:
    """Start a server whose connections are ServerProtocols calling ``handler`` per request
    (``connections``: the registry of open ones, created here unless given)."""
    loop = asyncio.get_running_loop()
    connections = set() if connections is None else connections

    def factory() -> asyncio.Protocol:
        proto = ServerProtocol(handler, limits, timeouts, connections)
        return proto if tracer is None else tracer.wrap(proto, "c")

    server = await loop.create_server(
        factory,
        host, port, ssl=ssl_context, reuse_address=True, backlog=4096,
        reuse_port=reuse_port or None,
    )
    for sock in server.sockets:
        # Accepted sockets inherit these from the listening socket (Linux): no per-connection
        # system calls. SO_SNDBUF/SO_RCVBUF cap what the kernel holds per client (it doubles
        # the value for its bookkeeping), so a slow client's bound is real, not just RSS.
        set_nodelay(sock)
        if limits.socket_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.socket_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, limits.socket_buffer)
    return Listener(server, connections)


def router(pool: Pool, api_key: str | None, obs: Observer, auth: ClientAuth,
           metrics: bool) -> Handler:
    """``/v1/*`` goes upstream (after the client token check, when tokens are set);
    ``/healthz`` and ``/metrics`` (unless an admin port serves it) are answered here, never
    upstream; anything else is a 404. Every request gets a :class:`Record`, finished once."""
    local = LocalEndpoints(pool, obs)

    async def handle(ex: Exchange) -> None:
        req = ex.request
        rid = request_id(header_value(req.headers, b"x-request-id"))
        record = Record(req.method, req.path, ex.peer() if obs.log.enabled else "", rid,
                        len(req.body), obs.clock())
        obs.start(record)
        if req.path.startswith(b"/v1/"):
            if not auth.allows(header_value(req.headers, b"authorization")):
                local.error(ex, record, 401, "missing or invalid relay token (Authorization: "
                            "Bearer)", "invalid_api_key",
                            [(b"www-authenticate", b'Bearer realm="relay"')])
                return
            await RelayStream(ex, pool, api_key, obs, record, auth.enabled).run()
        elif not local.serve(ex, record, metrics):
            local.error(ex, record, 404, "not found: the relay serves /v1/*, /healthz and "
                        "/metrics", "unknown_url")

    return handle


def admin_router(pool: Pool, observer: Observer) -> Handler:
    """The ``--admin-port`` listener: ``/metrics`` and ``/healthz`` only."""
    local = LocalEndpoints(pool, observer)

    async def handle(ex: Exchange) -> None:
        req = ex.request
        record = Record(req.method, req.path, "", request_id(None), 0, observer.clock())
        if not local.serve(ex, record, True):
            local.error(ex, record, 404, "not found: the admin port serves /metrics and "
                        "/healthz", "unknown_url")

    return handle


class LocalEndpoints:
    """``/healthz`` (liveness: version, uptime, and the live counts a soak checks) and
    ``/metrics`` (Prometheus text)."""

    def __init__(self, pool: Pool, observer: Observer) -> None:
        self.pool, self.obs, self.started = pool, observer, time.time()

    def serve(self, ex: Exchange, record: Record, metrics: bool) -> bool:
        path = ex.request.path
        if path == b"/healthz":
            pool = self.pool
            doc = {"status": "ok", "version": __version__, "pid": os.getpid(),
                   "uptime_s": round(time.time() - self.started),
                   "client_connections": len(self.obs.connections), "upstream_open": pool.open,
                   "upstream_idle": pool.idle_count, "tasks": len(asyncio.all_tasks())}
            self.respond(ex, record, 200, json.dumps(doc).encode(), b"application/json")
        elif path == b"/metrics" and metrics:
            self.respond(ex, record, 200, self.obs.registry.render(), METRICS_TYPE)
        else:
            return False
        return True

    def respond(self, ex: Exchange, record: Record, status: int, body: bytes,
                content_type: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        record.status = status
        record.ttfb = self.obs.clock() - record.started
        ex.respond(status, body, content_type,
                   [*extra, (b"x-request-id", record.request_id.encode())])
        record.bytes_out = len(body)
        self.obs.finish(record, "complete")

    def error(self, ex: Exchange, record: Record, status: int, message: str, code: str,
              extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.respond(ex, record, status, error_body(message, "invalid_request_error", code),
                     b"application/json", extra)


@dataclass
class Relay:
    """A running relay: its server, its pool, and the embedded mock when it has one."""

    config: Config
    listener: Listener
    pool: Pool
    mock_listener: Listener | None = None
    mock: MockUpstream | None = None
    observer: Observer | None = None
    admin_listener: Listener | None = None
    access_log: TextIO | None = None

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def upstream(self) -> Origin:
        return self.pool.origin

    async def drain(self, timeout: float) -> bool:
        """Graceful stop of the public listener (see :meth:`Listener.drain`)."""
        return await self.listener.drain(timeout)

    async def close(self) -> None:
        self.listener.close()
        if self.admin_listener is not None:
            self.admin_listener.close()
        await self.pool.close()
        if self.mock_listener is not None:
            self.mock_listener.close()
        if self.access_log is not None and self.access_log is not sys.stderr:
            self.access_log.close()


async def start_relay(config: Config) -> Relay:
    """Listen on ``config.host:port``; with no upstream, start the mock and relay to it."""
    upstream, mock_listener, mock = config.upstream, None, None
    if upstream is None:
        mock = MockUpstream()
        mock_listener = await listen(mock, "127.0.0.1", 0, config.limits, config.timeouts)
        upstream = Origin("http", "127.0.0.1", mock_listener.port)
    ctx = tls_context(config.upstream_ca) if upstream.tls else None
    tracer = Tracer() if config.trace else None
    pool = Pool(upstream, config.limits, config.timeouts, ctx, tracer)
    connections: set[ServerProtocol] = set()
    log_stream = open_access_log(config.access_log)
    observer = Observer(AccessLog(log_stream), asyncio.get_running_loop().time, connections)
    observer.watch_pool(pool)
    handler = router(pool, config.api_key, observer, ClientAuth(config.client_tokens),
                     metrics=config.admin_port is None)
    listener = await listen(handler, config.host, config.port, config.limits, config.timeouts,
                            connections=connections, reuse_port=config.reuse_port,
                            tracer=tracer)
    admin_listener = None
    if config.admin_port is not None:
        admin_listener = await listen(admin_router(pool, observer), config.host,
                                      config.admin_port, config.limits, config.timeouts)
    return Relay(config, listener, pool, mock_listener, mock, observer, admin_listener,
                 log_stream)


def open_access_log(where: str) -> TextIO | None:
    """``-``: stderr; ``off``: none; anything else: a file, appended to, line by line."""
    if where == "off":
        return None
    if where == "-":
        return sys.stderr
    return open(where, "a", buffering=1, encoding="utf-8")  # closed by Relay.close()


def banner(relay: Relay) -> str:
    url = f"http://{relay.config.host}:{relay.port}"
    if relay.mock_listener is not None:
        up = (f"upstream: the built-in mock upstream at {relay.upstream} "
              "(no --upstream / RELAY_UPSTREAM given)")
    else:
        up = f"upstream: {relay.upstream}"
    key = "an API key from the environment is injected upstream" if relay.config.api_key else (
        "no API key injected (set OPENAI_API_KEY or RELAY_API_KEY_ENV to inject one)")
    body = '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    return "\n".join([
        f"relay {__version__} listening on {url} (loop: {relay.config.loop})",
        up,
        key,
        "",
        "try it:",
        f"  curl -N {url}/v1/chat/completions -H 'content-type: application/json' -d '{body}'",
        "",
        "or with the openai SDK:",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{url}/v1", api_key="unused")',
        '  stream = client.chat.completions.create(model="mock-gpt", stream=True,',
        '      messages=[{"role": "user", "content": "hi"}])',
        "  for chunk in stream:",
        '      print(chunk.choices[0].delta.content or "", end="", flush=True)',
        "",
    ])


def tune_gc() -> None:
    """Make the cyclic garbage collector rare.

    A full (generation 2) collection walks every live object: with 10,000 open streams that
    paused the event loop for up to 170 ms (measured with gc.callbacks), the relay's worst
    latency. The relay's per-request objects form no reference cycles (a test checks this), so
    reference counting frees them; the collector is left for rare cycles (exception tracebacks):
    startup objects are frozen out of its scans, young collections stay small (5,000 objects:
    pauses under ~6 ms measured at 5,000 streams, where 50,000 gave 12 ms and the default
    thresholds 69 ms) and full collections become rare.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 50, 1_000)


async def wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(config: Config) -> None:
    relay = await start_relay(config)
    tune_gc()
    print(banner(relay), flush=True)
    try:
        await wait_for_signal()
        log.info("signal received: draining (up to %g s)", config.drain_timeout)
        clean = await relay.drain(config.drain_timeout)
        log.info("drained %s", "cleanly" if clean else "with streams cut at the timeout")
    finally:
        await relay.close()


async def serve_mock(host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
    # A load source for benchmarks: no connection cap of its own.
    limits, timeouts = Limits(max_connections=1_000_000), Timeouts()
    listener = await listen(MockUpstream(), host, port, limits, timeouts, ssl_context)
    tune_gc()
    scheme = "https" if ssl_context else "http"
    print(f"mock upstream listening on {scheme}://{host}:{listener.port}", flush=True)
    try:
        await wait_for_signal()
    finally:
        listener.close()


def run(main: Coroutine[Any, Any, None], loop: str = "uvloop") -> None:
    """Run ``main`` on uvloop (default) or the stdlib asyncio loop (``--loop asyncio``)."""
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            runner.run(main)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
