"""Routing: which endpoint answers a request.

First the guard (:mod:`relay.guard`): a ``Host`` the relay does not serve gets 421, a foreign
web ``Origin`` (or none, from a ``Sec-Fetch-Site: cross-site`` request where the key is spent)
gets 403, before anything else. Then ``/v1/*`` goes upstream (after the
client-token check, when tokens are set); ``/healthz`` and ``/metrics`` (unless an admin port
serves it) are answered locally, never upstream; ``/events/*`` are the pub/sub channels
(:mod:`relay.channels`); anything else is a 404. Routes match the
normalized path (:mod:`relay.http1.target`: no dot segment can leave ``/v1/``);
``/v1/streams/*`` are the relay's own (resumable streams, :mod:`relay.streams`), never
forwarded. Every request
gets a :class:`~relay.ops.observer.Record`, finished exactly once by whichever endpoint answers
it, or here if a bug escapes the endpoint (so the access log has one line per request); a
request its client connection refused before routing gets one too (:meth:`Router.refused`).

Direct answers (:class:`~relay.net.exchange.DirectAnswers`): what routing decides depends only
on a request's head (Host, Origin, path, method, tokens fixed at startup), so for a head the
client connection knows, the decision is kept with it (:class:`_Plan`). A publish whose head
was routed before is answered at once from its bytes: the same checks' verdict, the same
answer's bytes, the same record, without an exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .auth import ClientAuth
from .channels.endpoints import PREFIX as CHANNELS
from .channels.endpoints import ChannelEndpoints
from .cors import Cors
from .errors import error_body
from .guard import Guard
from .http1.known_heads import ParsedHead
from .http1.messages import Headers, Request
from .http1.request_head import Rejection
from .http1.writers import reason_phrase, start_response
from .local import LocalEndpoints
from .net.exchange import Exchange, Handler
from .net.pool import Pool
from .ops.observer import Observer, Record, request_id
from .proxy import ProxyRequest
from .streams.endpoints import PREFIX as STREAMS
from .streams.endpoints import StreamEndpoints

log = logging.getLogger("relay.client")  # (the logger of handler failures the usual way)


class Router:
    """The public listener's handler (see the module docstring): one call per request."""

    def __init__(self, pool: Pool, api_key: str | None, obs: Observer, auth: ClientAuth,
                 metrics: bool, guard: Guard, channels: ChannelEndpoints | None = None,
                 streams: StreamEndpoints | None = None) -> None:
        self._pool, self._api_key, self._obs, self._auth = pool, api_key, obs, auth
        self._metrics, self._guard, self._channels, self._streams = (metrics, guard, channels,
                                                                      streams)
        self._local = LocalEndpoints(pool, obs)

    def direct(self, head: ParsedHead, body: bytes, peer: Callable[[], str]) -> bytes | None:
        """A whole request of a known head answered in bytes, or None (see the module
        docstring): only publishes to a channel, and only the ones it accepts."""
        plan = head.plan
        if not isinstance(plan, _Plan) or plan.router is not self:  # (its first time here)
            plan = head.plan = self._plan(head)
        if plan.channel is None or self._channels is None:
            return None
        obs = self._obs
        rid = request_id(head.fields.get(b"x-request-id"))
        record = Record(head.method, head.path, peer() if obs.log.enabled else "", rid,
                        len(body), obs.clock())
        try:
            answer = self._channels.publish_direct(plan.channel, body)
        except Exception:
            return self._failed(head, record, plan)
        if answer is None:  # refused: the usual way says why
            return None
        record.status, record.ttfb, record.bytes_out = 200, obs.clock() - record.started, len(
            answer)
        obs.finish(record, "complete")
        return b"".join((plan.head_start, rid, plan.head_end, b"%d\r\n\r\n" % len(answer),
                         answer))

    def refused(self, request: Request | None, rejection: Rejection,
                peer: Callable[[], str]) -> None:
        """A request its connection refused before routing (relay.net.exchange.Refusals):
        recorded as any other, ended ``refused``, its line with the status and the reason;
        with no method or path when its head was never parsed."""
        obs = self._obs
        method, path, given = (b"", b"", None) if request is None else (
            request.method, request.path, request.header(b"x-request-id"))
        record = Record(method, path, peer() if obs.log.enabled else "", request_id(given), 0,
                        obs.clock())
        record.status, record.reason = rejection.status, rejection.logged
        obs.start(record)
        obs.finish(record, "refused")

    def _failed(self, head: ParsedHead, record: Record, plan: _Plan) -> bytes:
        """What the usual way makes of a handler that raised (``_escaped``, then
        relay.net.exchange's ``answer``): logged, recorded as a 500, answered with one."""
        log.exception("handler failed for %s %s", head.method.decode("latin-1"),
                      head.path.decode("latin-1"))
        self._escaped(record)
        body = error_body("internal error in the relay", "server_error", None)
        head_bytes, _ = start_response(head.method, head.http_version, 500, reason_phrase(500),
                                       [(b"content-type", b"application/json"), *plan.extra],
                                       len(body), True)
        return head_bytes + body

    def _plan(self, head: ParsedHead) -> _Plan:
        """What :meth:`_route` decides for requests of ``head``, when it is a direct one."""
        fields, channels = head.fields, self._channels
        if (channels is None or head.path.startswith(b"/v1/") or self._guard.check(
                fields.get(b"host"), fields.get(b"origin"), fields.get(b"sec-fetch-site"),
                head.method, head.path) is not None):
            return _Plan(self, None, [])
        extra = _cors_headers(fields.get(b"origin"), self._guard.cors) or []
        return _Plan(self, channels.direct_channel(head), extra)

    def __call__(self, ex: Exchange) -> Awaitable[None] | None:
        req, obs = ex.request, self._obs
        rid = request_id(req.header(b"x-request-id"))
        record = Record(req.method, req.path, ex.peer() if obs.log.enabled else "", rid,
                        len(req.body), obs.clock())
        obs.start(record)
        try:
            pending = self._route(ex, record)
        except BaseException:
            self._escaped(record)
            raise
        return None if pending is None else self._finish(pending, record)

    async def _finish(self, pending: Awaitable[None], record: Record) -> None:
        try:
            await pending
        except BaseException:
            self._escaped(record)
            raise

    def _escaped(self, record: Record) -> None:
        if record.ended is None:  # a bug escaped: still one log line, and the gauges
            record.status = record.status or 500
            self._obs.finish(record, "internal_error")

    def _route(self, ex: Exchange, record: Record) -> Awaitable[None] | None:
        """Answer now, or return what finishes the answer (see relay.net.exchange.Handler)."""
        req, local = ex.request, self._local
        refused = self._guard.check(req.header(b"host"), req.header(b"origin"),
                                    req.header(b"sec-fetch-site"), req.method, req.path)
        if refused is not None:
            local.error(ex, record, refused.status, refused.message, _code(refused.status))
        elif _cross_origin(ex, self._guard.cors):
            local.preflight(ex, record, self._guard.cors)
        elif self._streams is not None and req.path.startswith(STREAMS):
            return self._streams.handle(ex, record)  # (its own token check: EventSource's too)
        elif req.path.startswith(b"/v1/"):
            return self._proxy(ex, record)
        elif self._channels is not None and req.path.startswith(CHANNELS):
            return self._channels.handle(ex, record)
        elif not local.serve(ex, record, self._metrics):
            local.error(ex, record, 404, "not found: the relay serves /v1/*, /events/*, "
                        "/healthz, /metrics and its demo page at /", "unknown_url")
        return None

    async def _proxy(self, ex: Exchange, record: Record) -> None:
        authorization = ex.request.header(b"authorization")
        auth = self._auth
        if not auth.allows(authorization):
            self._local.error(ex, record, 401, "missing or invalid relay token "
                              "(Authorization: Bearer)", "invalid_api_key",
                              [(b"www-authenticate", b'Bearer realm="relay"')])
            return
        streams = self._streams.streams if self._streams is not None else None
        await ProxyRequest(ex, self._pool, self._api_key, self._obs, record, auth.enabled,
                           streams, auth.owner(authorization)).run()


def router(pool: Pool, api_key: str | None, obs: Observer, auth: ClientAuth, metrics: bool,
           guard: Guard, channels: ChannelEndpoints | None = None,
           streams: StreamEndpoints | None = None) -> Handler:
    """The public listener's handler (see the module docstring)."""
    return Router(pool, api_key, obs, auth, metrics, guard, channels, streams)


def admin_router(pool: Pool, observer: Observer, guard: Guard) -> Handler:
    """The ``--admin-port`` listener: ``/metrics`` and ``/healthz`` only."""
    local = LocalEndpoints(pool, observer)

    def handle(ex: Exchange) -> None:
        req = ex.request
        record = Record(req.method, req.path, "", request_id(None), 0, observer.clock())
        refused = guard.check(req.header(b"host"), req.header(b"origin"),
                              req.header(b"sec-fetch-site"), req.method, req.path)
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
    extra = _cors_headers(ex.request.header(b"origin"), cors)
    if extra is None:
        return False
    ex.extra = extra
    return ex.request.method == b"OPTIONS" and ex.request.header(
        b"access-control-request-method") is not None


def _cors_headers(origin: bytes | None, cors: Cors) -> Headers | None:
    """The CORS headers of a response to ``origin``; None unless it is an allowed one."""
    if origin is None or not cors.enabled or not cors.allows(origin.decode("latin-1")):
        return None
    return cors.response_headers(origin)


_RID = b"\0"  # (a stand-in for the request id: no header value can hold a NUL)
_NO_LENGTH = b"0\r\n\r\n"


class _Plan:
    """A known head's route, when it is a direct one (``channel``: the channel its requests
    publish to), and the bytes of its answer's head around the request id and the length:
    what :meth:`relay.net.exchange.Exchange.respond` writes for a publish's 200, made once
    by the same :func:`~relay.http1.writers.start_response`."""

    __slots__ = ("channel", "extra", "head_end", "head_start", "router")

    def __init__(self, router: Router, channel: str | None, extra: Headers) -> None:
        self.router, self.channel, self.extra = router, channel, extra
        head, _ = start_response(b"POST", b"1.1", 200, reason_phrase(200),
                                 [(b"content-type", b"application/json"), (b"x-request-id", _RID),
                                  *extra], 0, True)
        self.head_start, rest = head.split(_RID)
        assert rest.endswith(b"content-length: " + _NO_LENGTH)
        self.head_end = rest[:-len(_NO_LENGTH)]
