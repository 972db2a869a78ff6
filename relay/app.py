"""Wiring: the relay's parts put together, the embedded mock, the banner, signals, the loop.

:func:`start_relay` builds a running relay from a :class:`~relay.config.Config`: the mock (when
no upstream is configured), the pool, the observer, the router and the listeners. uvloop is
imported here only, where the loop is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import __version__
from .auth import ClientAuth
from .channels.broker import Broker, MemoryBroker
from .channels.endpoints import ChannelEndpoints
from .config import Config, Limits, Origin, Timeouts
from .cors import Cors
from .errors import StartupError, listen_error
from .guard import Guard, host_check_on
from .mock import MockUpstream
from .net.budget import BodyBudget
from .net.exchange import Handler
from .net.listener import Connections, Listener, listen
from .net.pool import Pool, tls_context
from .ops.access_log import AccessLog, open_access_log
from .ops.loop_lag import LoopLag
from .ops.observer import Observer
from .ops.trace import Tracer
from .ops.workers import ready
from .router import admin_router, router
from .streams.endpoints import StreamEndpoints
from .streams.registry import Streams

if TYPE_CHECKING:
    from .redis_link import RedisLink

log = logging.getLogger("relay")


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
    access_log: AccessLog | None = None  # closed last: the lines still waiting go out
    budget: BodyBudget | None = None  # request-body memory, shared by both listeners
    channels: ChannelEndpoints | None = None
    loop_lag: LoopLag | None = None
    streams: Streams | None = None
    redis: RedisLink | None = None  # the connections both use, with --redis

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def upstream(self) -> Origin:
        return self.pool.origin

    async def shutdown(self, grace: float) -> bool:
        """Graceful stop of the public listener (see :meth:`Listener.shutdown`), then of the
        resumable generations that outlive their clients (within the same grace)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        clean = await self.listener.shutdown(grace)
        if self.streams is not None:
            clean = await self.streams.drain(deadline - loop.time()) and clean
        return clean

    def stop_now(self) -> tuple[int, int]:
        """End at once what :meth:`shutdown` would end at its deadline (SSE streams get their
        ``relay_shutdown`` event): (client connections, resumable generations) still open."""
        cut = self.listener.stop_now()
        return cut, 0 if self.streams is None else self.streams.stop_live()

    async def close(self) -> None:
        self.listener.close()
        if self.loop_lag is not None:
            self.loop_lag.stop()
        if self.admin_listener is not None:
            self.admin_listener.close()
        await self.pool.close()
        if self.channels is not None:
            await self.channels.broker.close()
        if self.streams is not None:
            await self.streams.close()
        if self.redis is not None:
            await self.redis.close()
        if self.mock_listener is not None:
            self.mock_listener.close()
        if self.access_log is not None:
            self.access_log.close()


async def start_relay(config: Config) -> Relay:
    """Listen on ``config.host:port``; with no upstream, start the mock and relay to it."""
    upstream, mock_listener, mock = config.upstream, None, None
    if upstream is None:
        mock = MockUpstream(delay_ms=config.mock_delay_ms)
        mock_listener = await listen(mock, "127.0.0.1", 0, config.limits, config.timeouts)
        upstream = Origin("http", "127.0.0.1", mock_listener.port)
    ctx = upstream_tls(config)
    tracer = Tracer() if config.trace else None
    pool = Pool(upstream, config.limits, config.timeouts, ctx, tracer)
    connections, budget = Connections(), BodyBudget(config.limits.max_body_memory)
    access_log = _access_log(config)
    observer = Observer(access_log, time.perf_counter, connections)
    observer.watch_pool(pool)
    observer.watch_bodies(budget)
    loop_lag = observer.watch_loop(asyncio.get_running_loop())
    guard = Guard(config.host, config.allowed_hosts, Cors(config.cors_origins))
    auth = ClientAuth(config.client_tokens)
    link = await open_link(config)
    if link is not None:
        observer.health.append(link.health)
    channels = ChannelEndpoints(await open_broker(config, link), config.channels, auth,
                                ClientAuth(config.publish_tokens), observer)
    channels.register_figures(observer.registry)
    streams = StreamEndpoints(await open_streams(config, link), auth, observer)
    streams.register_figures(observer.registry)
    handler = router(pool, config.api_key, observer, auth, config.admin_port is None, guard,
                     channels, streams)
    listener = await _listen(config, "", handler, config.port, connections=connections,
                             reuse_port=config.reuse_port, tracer=tracer, budget=budget)
    admin_listener = None
    if config.admin_port is not None:
        admin_listener = await _listen(config, "--admin-port: ",
                                       admin_router(pool, observer, guard), config.admin_port,
                                       budget=budget)
    return Relay(config, listener, pool, mock_listener, mock, observer, admin_listener,
                 access_log, budget, channels, loop_lag, streams.streams, link)


async def _listen(config: Config, flag: str, handler: Handler, port: int,
                  **kw: Any) -> Listener:
    """:func:`listen` on ``config.host:port``; a refusal names the address (and the flag)."""
    try:
        return await listen(handler, config.host, port, config.limits, config.timeouts, **kw)
    except OSError as exc:
        raise StartupError(flag + listen_error(config.host, port, exc)) from None


def check_startup(config: Config) -> None:
    """What can be refused before anything listens (``--workers`` checks it in the supervisor,
    so a worker is not restarted forever on a mistake): the CA file, the Redis client."""
    upstream_tls(config)
    if config.redis is not None:
        _redis_link()


def upstream_tls(config: Config) -> ssl.SSLContext | None:
    """The TLS context for an https upstream; a CA file that cannot be read is named."""
    if config.upstream is not None and not config.upstream.tls:
        return None
    try:
        return tls_context(config.upstream_ca)
    except OSError as exc:  # (ssl.SSLError is one: a file that holds no PEM certificate)
        what = f"--upstream-ca {config.upstream_ca}" if config.upstream_ca else "certifi's CAs"
        raise StartupError(f"cannot load {what}: {exc.strerror or exc}") from None


def _redis_link() -> type[RedisLink]:
    try:
        from .redis_link import RedisLink
    except ImportError as exc:  # (the redis extra is optional: the core runs without it)
        raise StartupError(f"--redis needs the redis client ({exc}): install relay[redis] "
                           "(pip install 'relay[redis]'; in a clone: .venv/bin/pip install -e "
                           "'.[redis]')") from None
    return RedisLink


async def open_broker(config: Config, link: RedisLink | None) -> Broker:
    """Channels in this process, or shared through Redis (``link``: the instance's
    :class:`~relay.redis_link.RedisLink`, with ``--redis``)."""
    loop = asyncio.get_running_loop()
    if link is None:
        return MemoryBroker(loop, config.channels)
    from .channels.redis_broker import RedisBroker  # (redis is imported only with --redis)

    return await RedisBroker.connect(link, loop, config.channels)


async def open_streams(config: Config, link: RedisLink | None) -> Streams:
    """Resumable streams in this process, or shared through the same Redis connections."""
    loop = asyncio.get_running_loop()
    if link is None:
        return Streams(loop, config.resume)
    from .streams.redis_store import RedisStore

    return await RedisStore.connect(link, loop, config.resume)


async def open_link(config: Config) -> RedisLink | None:
    """With ``--redis``: the instance's two Redis connections, shared by channels and streams."""
    if config.redis is None:
        return None
    return _redis_link()(config.redis, asyncio.get_running_loop())


def _access_log(config: Config) -> AccessLog:
    try:
        return AccessLog(*open_access_log(config.access_log), asyncio.get_running_loop())
    except OSError as exc:
        raise StartupError(f"cannot open --access-log {config.access_log}: "
                           f"{exc.strerror or exc}") from None


def banner(config: Config, port: int, mock: Origin | None = None, workers: str = "") -> str:
    """What ``relay serve`` prints once it listens on ``port`` (``mock``: the built-in mock's
    address; ``workers``: the supervisor's words on its workers, which print none of this)."""
    url = f"http://{config.host}:{port}"
    if config.upstream is None:
        at = f"at {mock}" if mock is not None else "in each worker"
        up = f"upstream: the built-in mock upstream {at} (no --upstream / RELAY_UPSTREAM given)"
    else:
        up = f"upstream: {config.upstream}"
    key = "an API key from the environment is injected upstream" if config.api_key else (
        "no API key injected (set OPENAI_API_KEY or RELAY_API_KEY_ENV to inject one); "
        "clients' own Authorization goes upstream")
    host_check = [] if host_check_on(config.host, config.allowed_hosts) else [
        f"Host check off: on {config.host} (not loopback) any Host is answered, so a "
        "DNS-rebinding page can use the relay; give the names clients use with --allowed-host "
        "NAME (or RELAY_ALLOWED_HOSTS)"]
    return "\n".join([
        f"relay {__version__} listening on {url} (loop: {config.loop}{workers})",
        up,
        key,
        *host_check,
        "",
        *_try_it(url, "mock-gpt" if config.upstream is None else "gpt-4o-mini"),
    ])


def _try_it(url: str, model: str) -> list[str]:
    """The banner's commands, each working as written (``model``: the mock answers any name;
    a real upstream needs one it serves)."""
    body = f'{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"hi"}}]}}'
    return [
        "try it:",
        f"  curl -N {url}/v1/chat/completions -H 'content-type: application/json' -d '{body}'",
        "",
        "or with the openai SDK (not a dependency of the relay: .venv/bin/pip install openai):",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{url}/v1", api_key="unused")',
        f'  stream = client.chat.completions.create(model="{model}", stream=True,',
        '      messages=[{"role": "user", "content": "hi"}])',
        "  for chunk in stream:",
        '      print(chunk.choices[0].delta.content or "", end="", flush=True)',
        "",
        f"in a browser: the demo page at {url}/ (a chat through the relay, a channel panel)",
        f"channels: subscribe with curl -N {url}/events/NAME (EventSource in a page),",
        f"  publish with curl {url}/events/NAME -H 'content-type: application/json' "
        """-d '{"data": "hello"}'""",
        "",
    ]


def tune_gc() -> None:
    """Make the cyclic garbage collector rare.

    A full (generation 2) collection walks every live object, so with thousands of open
    streams it pauses the event loop for as long as the walk takes: the relay's worst latency.
    The relay's per-request objects form no reference cycles (a test checks this), so
    reference counting frees them; the collector is left for rare cycles (exception tracebacks):
    startup objects are frozen out of its scans, young collections stay small (5,000 objects)
    and full collections become rare. The pauses measured for these thresholds are in
    bench/README.md ("Garbage collection").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 50, 1_000)


class Signals:
    """SIGINT and SIGTERM, counted as they come: the first starts the drain, a second one
    during it ends the process at once. A worker of ``--workers`` ignores SIGINT: a Ctrl-C
    reaches the terminal's whole process group, and the supervisor passes it on as SIGTERM
    (counted twice, the first Ctrl-C would cut every stream)."""

    def __init__(self, worker: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._came: asyncio.Queue[int] = asyncio.Queue()
        loop.add_signal_handler(signal.SIGTERM, self._came.put_nowait, signal.SIGTERM)
        if worker:
            loop.add_signal_handler(signal.SIGINT, lambda: None)
        else:
            loop.add_signal_handler(signal.SIGINT, self._came.put_nowait, signal.SIGINT)

    async def next(self) -> int:
        return await self._came.get()


async def wait_for_signal() -> None:
    await Signals().next()


async def serve(config: Config) -> None:
    try:
        relay = await start_relay(config)
    except OSError as exc:  # (the known causes are named where they happen; this is the rest)
        raise StartupError(f"cannot start: {exc}") from None
    tune_gc()
    if config.supervisor:
        ready(config.supervisor)
    else:
        print(banner(config, relay.port, relay.upstream if relay.mock else None), flush=True)
    signals = Signals(worker=bool(config.supervisor))
    try:
        await signals.next()
        log.info("signal received: draining (up to %g s)", config.drain_timeout)
        await drain(relay, signals)
    finally:
        await relay.close()


async def drain(relay: Relay, signals: Signals) -> None:
    """The graceful drain, cut short by a second signal (then one line on stderr says so)."""
    grace = asyncio.ensure_future(relay.shutdown(relay.config.drain_timeout))
    second = asyncio.ensure_future(signals.next())
    await asyncio.wait((grace, second), return_when=asyncio.FIRST_COMPLETED)
    if grace.done():
        second.cancel()
        log.info("drained %s", "cleanly" if grace.result() else
                 "with streams cut at the timeout")
        return
    grace.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await grace
    conns, generations = relay.stop_now()
    more = f" and {generations} resumable generations" if generations else ""
    print(f"relay: second signal: exiting now, {conns} open connections{more} cut",
          file=sys.stderr, flush=True)


async def serve_mock(host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
    # A load source for benchmarks: no connection cap of its own.
    limits, timeouts = Limits(max_connections=1_000_000), Timeouts()
    try:
        listener = await listen(MockUpstream(), host, port, limits, timeouts, ssl_context)
    except OSError as exc:
        raise StartupError(listen_error(host, port, exc)) from None
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
