"""Routing: which endpoint answers a request.

First the guard (:mod:`relay.guard`): a ``Host`` the relay does not serve gets 421, a foreign
web ``Origin`` gets 403, before anything else. Then ``/v1/*`` goes upstream (after the
client-token check, when tokens are set); ``/healthz`` and ``/metrics`` (unless an admin port
serves it) are answered locally, never upstream; ``/events/*`` are the pub/sub channels
(:mod:`relay.channels`); anything else is a 404. Routes match the
normalized path (:mod:`relay.http1.target`: no dot segment can leave ``/v1/``);
``/v1/streams/*`` are the relay's own (resumable streams, :mod:`relay.streams`), never
forwarded. Every request
gets a :class:`~relay.ops.observer.Record`, finished exactly once by whichever endpoint answers
it, or here if a bug escapes the endpoint (so the access log has one line per request).
"""

from __future__ import annotations

from .auth import ClientAuth
from .channels.endpoints import PREFIX as CHANNELS
from .channels.endpoints import ChannelEndpoints
from .cors import Cors
from .guard import Guard
from .http1.headers import header_value
from .local import LocalEndpoints
from .net.client import Handler
from .net.exchange import Exchange
from .net.pool import Pool
from .ops.observer import Observer, Record, request_id
from .proxy import ProxyRequest
from .streams.endpoints import PREFIX as STREAMS
from .streams.endpoints import StreamEndpoints


def router(pool: Pool, api_key: str | None, obs: Observer, auth: ClientAuth, metrics: bool,
           guard: Guard, channels: ChannelEndpoints | None = None,
           streams: StreamEndpoints | None = None) -> Handler:
    """The public listener's handler (see the module docstring)."""
    local = LocalEndpoints(pool, obs)

    async def handle(ex: Exchange) -> None:
        req = ex.request
        rid = request_id(header_value(req.headers, b"x-request-id"))
        record = Record(req.method, req.path, ex.peer() if obs.log.enabled else "", rid,
                        len(req.body), obs.clock())
        obs.start(record)
        try:
            await _route(ex, record)
        except BaseException:
            if record.ended is None:  # a bug escaped: still one log line, and the gauges
                record.status = record.status or 500
                obs.finish(record, "internal_error")
            raise

    async def _route(ex: Exchange, record: Record) -> None:
        req = ex.request
        refused = guard.check(req.headers)
        if refused is not None:
            local.error(ex, record, refused.status, refused.message, _code(refused.status))
        elif _cross_origin(ex, guard.cors):
            local.preflight(ex, record, guard.cors)
        elif streams is not None and req.path.startswith(STREAMS):
            await streams.handle(ex, record)  # (its own token check: EventSource's query too)
        elif req.path.startswith(b"/v1/"):
            authorization = header_value(req.headers, b"authorization")
            if not auth.allows(authorization):
                local.error(ex, record, 401, "missing or invalid relay token (Authorization: "
                            "Bearer)", "invalid_api_key",
                            [(b"www-authenticate", b'Bearer realm="relay"')])
                return
            await ProxyRequest(ex, pool, api_key, obs, record, auth.enabled,
                               streams.streams if streams is not None else None,
                               auth.owner(authorization)).run()
        elif channels is not None and req.path.startswith(CHANNELS):
            await channels.handle(ex, record)
        elif not local.serve(ex, record, metrics):
            local.error(ex, record, 404, "not found: the relay serves /v1/*, /events/*, "
                        "/healthz, /metrics and its demo page at /", "unknown_url")

    return handle


def admin_router(pool: Pool, observer: Observer, guard: Guard) -> Handler:
    """The ``--admin-port`` listener: ``/metrics`` and ``/healthz`` only."""
    local = LocalEndpoints(pool, observer)

    async def handle(ex: Exchange) -> None:
        req = ex.request
        record = Record(req.method, req.path, "", request_id(None), 0, observer.clock())
        refused = guard.check(req.headers)
        if refused is not None:
            local.error(ex, record, refused.status, refused.message, _code(refused.status))
        elif not local.serve(ex, record, True):
            local.error(ex, record, 404, "not found: the admin port serves /metrics and "
                        "/healthz", "unknown_url")

    return handle


def _code(status: int) -> str:
    return "host_not_allowed" if status == 421 else "origin_not_allowed"


def _cross_origin(ex: Exchange, cors: Cors) -> bool:
    """Mark a response to an allowed web origin (its CORS headers); True if the request is a
    preflight, which the relay answers itself."""
    origin = header_value(ex.request.headers, b"origin")
    if origin is None or not cors.enabled or not cors.allows(origin.decode("latin-1")):
        return False
    ex.extra = cors.response_headers(origin)
    return ex.request.method == b"OPTIONS" and header_value(
        ex.request.headers, b"access-control-request-method") is not None
