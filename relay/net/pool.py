"""A keep-alive pool of upstream connections to the one configured origin.

``acquire()`` hands out the most recently idled connection that is still usable (LIFO: the
freshest one is the least likely to have been closed by the upstream's own idle timeout), or
opens a new one. ``put_back()`` takes a connection back only if its last response ended cleanly
(state IDLE); anything else is closed. A connection the upstream closes while idle tells the pool
through ``connection_lost`` and is dropped from the idle list at once, so it is never reused.

With ``Limits.max_upstream`` set, at most that many connections are open (in use, idle or being
opened). An ``acquire()`` beyond it waits in a FIFO queue until one is put back or closed, for
at most ``Timeouts.queue`` seconds; then it fails with :class:`UpstreamBusy` (503).

TLS is verified (certificate chain, host name, SNI) against certifi's roots or a private CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import certifi

from ..config import Limits, Origin, Timeouts
from ..errors import UpstreamBusy, UpstreamConnectError, UpstreamTimeout
from .deadlines import Deadlines
from .upstream import ConnState, UpstreamConnection

if TYPE_CHECKING:
    from ..ops.metrics import Histogram
    from ..ops.trace import Tracer


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """Verification on (CERT_REQUIRED, hostname checks, SNI) against certifi or a private CA."""
    ctx = ssl.create_default_context(cafile=cafile or certifi.where())
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Pool:
    """Idle keep-alive connections to one origin, with a size cap and idle expiry."""

    def __init__(
        self, origin: Origin, limits: Limits, timeouts: Timeouts,
        ssl_context: ssl.SSLContext | None, tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer
        self.origin = origin
        self.host_header = origin.host_header  # computed once, sent with every request
        self._limits = limits
        self._timeouts = timeouts
        self._ssl = ssl_context if origin.tls else None
        self._idle: deque[UpstreamConnection] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()  # once: each get_running_loop() costs a getpid()
        tick = min(1.0, timeouts.first_byte / 4, timeouts.read / 4,
                   timeouts.heartbeat / 4 if timeouts.heartbeat > 0 else 1.0)
        self.deadlines = Deadlines(self.loop, tick)
        self.created = 0
        self.reused = 0
        self.open = 0  # connections open or being opened (what max_upstream caps)
        self.connect_seconds: Histogram | None = None  # set by the observer
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def acquire(self) -> UpstreamConnection:
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.is_available() and not conn.has_expired(now, self._limits.pool_idle_timeout):
                self.reused += 1
                return conn
            conn.close()
        cap = self._limits.max_upstream
        if cap and self.open >= cap:
            await self._wait_for_room(cap)
            if self._idle:  # a connection was put back while we waited
                return await self.acquire()
        return await self._connect()

    async def _wait_for_room(self, cap: int) -> None:
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self._timeouts.queue)
        except TimeoutError:
            raise UpstreamBusy(f"all {cap} upstream connections are in use; waited "
                               f"{self._timeouts.queue:g} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _closed_one(self) -> None:
        self.open -= 1
        self._wake_one()

    def put_back(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose response ended cleanly for the next request; close any
        other."""
        if conn.state is ConnState.IDLE and len(self._idle) < self._limits.pool_size:
            self._idle.append(conn)
            self._schedule_sweep()
            self._wake_one()  # a queued acquire can take it
        elif conn.state is not ConnState.CLOSED:
            conn.close()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.deadlines.close()
        while self._idle:
            self._idle.pop().close()

    async def _connect(self) -> UpstreamConnection:
        # (Not loop.time(): uvloop's counts whole milliseconds, and a loopback or same-zone
        # connect takes less than one.)
        started = time.perf_counter()
        tracer = self._tracer
        made: list[UpstreamConnection] = []

        def factory() -> asyncio.Protocol:
            conn = UpstreamConnection(self._limits, self._timeouts, self.deadlines, self._discard,
                                      self.loop)
            made.append(conn)
            return conn if tracer is None else tracer.wrap(conn, "u")

        self.open += 1  # counted from now; a connection reports its close once (_discard)
        try:
            return await self._open(factory, made, started)
        except BaseException:
            # Failed or cancelled (the client left): a protocol already made reports through
            # its own close, so it is not counted twice; otherwise nothing will report.
            if made:
                made[0].close()
            else:
                self._closed_one()
            raise

    async def _open(self, factory: Callable[[], asyncio.Protocol],
                    made: list[UpstreamConnection], started: float) -> UpstreamConnection:
        loop = self.loop
        origin, timeout = self.origin, self._timeouts.connect
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    factory,
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl else None,
                    ssl_handshake_timeout=timeout if self._ssl else None,
                ),
                timeout,
            )
        except TimeoutError:
            msg = f"connecting to upstream {origin} timed out after {timeout:g} s"
            raise UpstreamTimeout(msg) from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamConnectError(
                f"TLS verification of upstream {origin} failed: {exc.verify_message}"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise UpstreamConnectError(f"cannot connect to upstream {origin}: {why}") from None
        self.created += 1
        if self.connect_seconds is not None:
            self.connect_seconds.observe(time.perf_counter() - started)
        return made[0]

    def _discard(self, conn: UpstreamConnection) -> None:
        """Called once by every connection this pool opened, when it closes."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._closed_one()

    def _schedule_sweep(self) -> None:
        if self._sweeper is None:
            delay = self._limits.pool_idle_timeout
            self._sweeper = self.loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for longer than the idle timeout (they hold upstream sockets)."""
        self._sweeper = None
        now = self.loop.time()
        for conn in [c for c in self._idle if c.has_expired(now, self._limits.pool_idle_timeout)]:
            conn.close()  # connection_lost -> _discard; close() calls _set_closed -> _discard too
        if self._idle:
            self._schedule_sweep()
