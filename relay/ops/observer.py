"""What the relay records per request, and where it goes: the metrics and the access log.

A :class:`Record` is filled in along one request (route, statuses, times, byte and event counts)
and finished exactly once, with how it ended: ``complete``, ``client_disconnect``,
``upstream_error`` or ``timeout``. :meth:`Observer.finish` then adds it to the metrics and
writes its access-log line. Nothing here runs per event: byte and event counts are kept where
the bytes go (the upstream connection for a relayed body, as read; the channel subscriber, the
resumed reader and their exchange for the relay's own streams, as written) and read once at
the end.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Sized
from typing import TYPE_CHECKING

from .access_log import AccessLog
from .loop_lag import LAG_BUCKETS, LoopLag
from .metrics import Registry

if TYPE_CHECKING:
    from ..channels.endpoints import ChannelEndpoints
    from ..net.budget import BodyBudget
    from ..net.pool import Pool
    from ..redis_link import RedisLink
    from ..streams.registry import Streams

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_random = random.Random()  # seeded from the OS once, at import


def request_id(given: bytes | None) -> bytes:
    """The client's ``X-Request-ID`` when it is a sane token, else a new random one."""
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # 96 random bits from the process's PRNG: unique enough to trace a request, with no
    # getrandom() system call per request (secrets.token_hex cost one; ids need not be secret).
    return b"%024x" % _random.getrandbits(96)


_STATUS = {status: str(status) for status in range(100, 600)}  # (labels: no str() per request)
_LOCAL_ROUTES = frozenset({"/", "/healthz", "/metrics", "/demo.js", "/favicon.svg"})


def _local_route(path: bytes) -> str:
    """The metrics label of a path outside ``/v1/`` and ``/events/`` (see :class:`Record`)."""
    text = path.decode("latin-1")
    return text if text in _LOCAL_ROUTES else "other"


class Record:
    """One request's facts, for its metrics and its access-log line. The request's method,
    path and id are kept as bytes and decoded only when read (the access log): a relay with
    the log off never decodes them, and answers carry ``rid`` as it is."""

    __slots__ = ("_method", "_path", "bytes_in", "bytes_out", "client", "ended", "events",
                 "reason", "replayed", "rid", "route", "started", "status", "stream_id", "ttfb",
                 "upstream_status", "wall_started")

    def __init__(self, method: bytes, path: bytes, client: str, request_id: bytes,
                 bytes_in: int, now: float) -> None:
        self._method, self._path = method, path
        # The metrics label: a few routes, never the path itself (one label per request).
        self.route = ("/v1" if path.startswith(b"/v1/") else "/events"
                      if path.startswith(b"/events/") else _local_route(path))
        self.client = client
        self.rid = request_id
        self.bytes_in = bytes_in
        self.bytes_out = self.events = self.status = 0
        self.started = now
        self.wall_started = time.time()
        self.upstream_status: int | None
        self.ttfb: float | None  # request received -> response head written
        self.ended: str | None
        self.stream_id: str | None  # a resumable stream this request started or read
        self.replayed: int | None  # events a resume replayed
        self.reason: str | None  # why a request refused before routing was refused
        self.upstream_status = self.ttfb = self.ended = self.stream_id = self.replayed = (
            self.reason) = None

    @property
    def method(self) -> str:
        return self._method.decode("latin-1")

    @property
    def path(self) -> str:
        return self._path.decode("latin-1")

    @property
    def request_id(self) -> str:
        return self.rid.decode("latin-1")


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

    def watch_pool(self, pool: Pool) -> None:
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

    def watch_bodies(self, budget: BodyBudget) -> None:
        """The request bodies held now (``--max-body-memory`` counts these), at scrape time."""
        self.registry.gauge("relay_request_body_bytes_held", "Request body bytes received and "
                            "held now, all connections (--max-body-memory).",
                            lambda: budget.used)

    def watch_channels(self, channels: ChannelEndpoints) -> None:
        """Channel figures, read at scrape time."""
        r, hub, stats = self.registry, channels.broker.hub, channels.stats
        r.gauge("relay_channel_subscribers", "Channel subscribers connected to this instance.",
                lambda: hub.subscribers)
        broker = channels.broker
        r.gauge("relay_channel_history_bytes", "Bytes of channel history held in this process "
                "(events' chunks plus their objects; 0 with Redis, which holds them).",
                lambda: broker.held)
        r.counter_from("relay_channel_publishes_total", "Events published.",
                       lambda: stats.publishes)
        r.counter_from("relay_channel_deliveries_total", "Events handed to subscribers.",
                       lambda: hub.stats.deliveries)
        r.counter_from("relay_channel_replayed_events_total",
                       "Events replayed to subscribers by Last-Event-ID.", lambda: stats.replayed)
        r.counter_from("relay_channel_resets_total",
                       "Subscribers whose Last-Event-ID was no longer held.",
                       lambda: stats.resets)
        r.counter_from("relay_channel_slow_drops_total",
                       "Subscribers dropped for not keeping up.", lambda: hub.stats.dropped)
        r.counter_from("relay_channel_heartbeats_total", "Heartbeats sent to subscribers.",
                       lambda: hub.stats.heartbeats)

    def watch_streams(self, streams: Streams) -> None:
        """Resumable-stream figures, read at scrape time."""
        r, stats = self.registry, streams.stats
        r.gauge("relay_resumable_streams", "Resumable streams held (live or ended, not "
                "expired).", lambda: len(streams))
        r.gauge("relay_resumable_streams_live", "Resumable streams still generating.",
                lambda: streams.live)
        r.gauge("relay_resumable_bytes", "Bytes of events held for resumable streams.",
                lambda: streams.held)
        for name, help_ in (("started", "Resumable streams started."),
                            ("resumed", "Resumes of a resumable stream (GET /v1/streams/{id})."),
                            ("orphaned", "Resumable streams stopped because nobody resumed."),
                            ("cancelled", "Resumable streams cancelled."),
                            ("expired", "Ended resumable streams forgotten after --resume-ttl.")):
            r.counter_from(f"relay_resumable_streams_{name}_total", help_,
                           _reader(stats, name))
        r.counter_from("relay_resumable_replayed_events_total",
                       "Events replayed to readers that resumed.", _reader(stats, "replayed"))

    def watch_redis(self, link: RedisLink) -> None:
        """With ``--redis``: /healthz answers 503 while the link is down (its pub/sub reader
        notices a lost connection at once and reconnects with backoff: no probe of its own)."""
        def check() -> tuple[str, str] | None:
            if link.connected.is_set():
                return None
            return (f"Redis (--redis) is unreachable: {link.trouble}; channels and resumable "
                    "streams shared through it are unavailable", "redis_unavailable")

        self.health.append(check)

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
            self.bytes_out.inc(record.bytes_out)  # (local pages: in the log; a publish: none)
            self.events.inc(record.events)
        if ended == "client_disconnect":
            self.client_disconnects.inc()
        self.log.write(record, self.clock() - record.started)


def _reader(obj: object, name: str) -> Callable[[], float]:
    """Reads ``obj.name`` at scrape time."""
    return lambda: float(getattr(obj, name))
