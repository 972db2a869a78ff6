"""What the relay records per request, and where it goes: the metrics and the access log.

A :class:`Record` is filled in along one request (route, statuses, times, byte and event counts)
and finished exactly once, with how it ended: ``complete``, ``client_disconnect``,
``upstream_error`` or ``timeout``. :meth:`Observer.finish` then adds it to the metrics and
writes its access-log line. Nothing here runs per event: byte and event counts are kept where
the bytes go (the upstream connection for a relayed body, as read; the channel subscriber, the
resumed reader and their exchange for the relay's own streams, as written) and read once at
the end.

Everyone may import ops; ops imports no other part of the relay. What it shows of the rest is
handed to it: a domain registers its own figures with :attr:`Observer.registry` (a gauge or a
counter is a name, a help text and a callable read at scrape time: see
``ChannelEndpoints.register_figures`` and ``StreamEndpoints.register_figures``), a dependency
adds a check to :attr:`Observer.health` (``RedisLink.health``), and the little it reads itself
of the upstream pool and the body budget is named here as protocols (:class:`PoolFigures`,
:class:`HeldBytes`), which those satisfy without knowing of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sized
from typing import Protocol

from .access_log import AccessLog
from .loop_lag import LAG_BUCKETS, LoopLag
from .metrics import Histogram, Registry
from .record import Record, request_id

__all__ = ["Observer", "Record", "request_id"]  # (the router imports the last two from here)

_STATUS = {status: str(status) for status in range(100, 600)}  # (labels: no str() per request)


class PoolFigures(Protocol):
    """What the metrics read of the upstream pool (:class:`relay.net.pool.Pool`), and the
    histogram it is handed to time its connects with."""

    open: int
    created: int
    reused: int
    connect_seconds: Histogram | None

    @property
    def idle_count(self) -> int: ...


class HeldBytes(Protocol):
    """A count of bytes held now (:class:`relay.net.budget.BodyBudget`: request bodies)."""

    used: int


class Observer:
    """The relay's metrics registry plus its access log (docs/reference.md lists the metrics)."""

    def __init__(self, access_log: AccessLog, clock: Callable[[], float],
                 connections: Sized) -> None:
        self.log = access_log
        self.clock = clock
        self.connections = connections  # the listener's registry of open client connections
        self.active_streams = 0
        # /healthz: each check gives (message, code) while its dependency cannot serve
        self.health: list[Callable[[], tuple[str, str] | None]] = []
        r = self.registry = Registry()
        r.gauge("relay_client_connections", "Open client connections.",
                lambda: len(connections))
        r.gauge("relay_active_streams", "Requests being relayed upstream now.",
                lambda: self.active_streams)
        self.requests = r.counter("relay_requests_total", "Requests answered, by route and "
                                  "status.", ["route", "status"])
        self.endings = r.counter("relay_requests_ended_total", "Requests by how they ended.",
                                 ["ended"])
        self.request_bytes = r.counter("relay_request_bytes_total",
                                       "Request body bytes received from clients.")
        self.bytes_out = r.counter("relay_response_bytes_total",
                                   "Response body bytes of /v1 and /events: relayed ones as "
                                   "read from the upstream (with chunk framing when passed "
                                   "through), the relay's own streams as written.")
        self.events = r.counter("relay_events_total", "SSE events sent to clients: relayed, "
                                "resumed, and to channel subscribers.")
        self.client_disconnects = r.counter(
            "relay_client_disconnects_total", "Clients that left before their response ended.")
        self.upstream_failures = r.counter("relay_upstream_failures_total",
                                           "Upstream failures, by reason.", ["reason"])
        self.heartbeats = r.counter("relay_heartbeats_total", "Heartbeat comments sent.")
        self.pauses = r.counter("relay_backpressure_pauses_total",
                                "Times a slow client paused its upstream's reads.")
        self.connect_seconds = r.histogram("relay_upstream_connect_seconds",
                                           "Time to open an upstream connection (TCP and TLS).")
        self.upstream_ttfb = r.histogram("relay_upstream_ttfb_seconds",
                                         "Upstream request written to response head received.")
        self.client_ttfb = r.histogram("relay_client_ttfb_seconds",
                                       "Client request received to response head written.")

    def watch_pool(self, pool: PoolFigures) -> None:
        """Pool figures, read at scrape time."""
        r = self.registry
        r.gauge("relay_upstream_connections_open", "Upstream connections open (in use or idle).",
                lambda: pool.open)
        r.gauge("relay_upstream_connections_idle", "Idle keep-alive upstream connections.",
                lambda: pool.idle_count)
        r.counter_from("relay_upstream_connections_created_total",
                       "Upstream connections opened.", lambda: pool.created)
        r.counter_from("relay_upstream_connections_reused_total",
                       "Requests sent on a reused keep-alive upstream connection.",
                       lambda: pool.reused)
        pool.connect_seconds = self.connect_seconds

    def watch_bodies(self, budget: HeldBytes) -> None:
        """The request bodies held now (``--max-body-memory`` counts these), at scrape time."""
        self.registry.gauge("relay_request_body_bytes_held", "Request body bytes received and "
                            "held now, all connections (--max-body-memory).",
                            lambda: budget.used)

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> LoopLag:
        """The event loop's lateness, sampled every 50 ms (see relay/ops/loop_lag.py)."""
        lag = LoopLag(loop, self.registry.histogram(
            "relay_event_loop_lag_seconds", "How late the event loop ran a timer (sampled "
            "every 50 ms): a stalled loop delays every stream.", LAG_BUCKETS))
        lag.start()
        return lag

    def start(self, record: Record) -> None:
        if record.route == "/v1":
            self.active_streams += 1

    def finish(self, record: Record, ended: str) -> None:
        """Close the record: its metrics and its access-log line. Exactly once per record."""
        if record.ended is not None:
            raise RuntimeError(f"request record finished twice ({record.ended}, {ended})")
        record.ended = ended
        if record.route == "/v1":
            self.active_streams -= 1
        self.requests.inc(1, (record.route, _STATUS.get(record.status) or str(record.status)))
        self.endings.inc(1, (ended,))
        if record.bytes_in:
            self.request_bytes.inc(record.bytes_in)
        if record.bytes_out and (record.route == "/v1" or record.route == "/events"):
            self.bytes_out.inc(record.bytes_out)  # (local pages: in the log)
            self.events.inc(record.events)
        if ended == "client_disconnect":
            self.client_disconnects.inc()
        self.log.write(record, self.clock() - record.started)

