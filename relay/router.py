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

One routing decision: :func:`route` is a pure function from a request's head (method, path,
Host, Origin, ``Sec-Fetch-Site``, a preflight's ``Access-Control-Request-Method``) and the
settings fixed at startup (:class:`Routing`) to a :class:`Route`: the endpoint (:class:`Way`),
or the guard's refusal and why, and the CORS headers of its answer. Every request takes its
route from it, the usual way (:meth:`Router._route`) and the fast one alike.

The fast way (:class:`~relay.net.exchange.DirectAnswers`, :meth:`Router.direct`) is only a
cheaper way to *answer* a route already accepted: since the route depends only on the head,
it is kept per head the client connection knows (:class:`_Plan`, in a bounded map beside the
router, never in the sans-IO head). A publish whose route is a channel the endpoints can
answer at once (``direct_channel``) is answered from its bytes, with the usual record and the
usual answer's bytes; anything else, a refused route or a refused or failing publish
included, goes the usual way, so every refusal and every failure has one path and one record.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .auth import ClientAuth
from .channels.endpoints import PREFIX as CHANNELS
from .channels.endpoints import ChannelEndpoints
from .cors import Cors
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

_PLANS = 4096  # known heads whose plan is kept (as many as the connections' known heads)


class Router:
    """The public listener's handler (see the module docstring): one call per request."""

    def __init__(self, pool: Pool, api_key: str | None, obs: Observer, auth: ClientAuth,
                 metrics: bool, guard: Guard, channels: ChannelEndpoints | None = None,
                 streams: StreamEndpoints | None = None) -> None:
        self._pool, self._api_key, self._obs, self._auth = pool, api_key, obs, auth
        self._metrics, self._guard, self._channels, self._streams = (metrics, guard, channels,
                                                                      streams)
        self._routing = Routing(guard, channels is not None, streams is not None)
        self._local = LocalEndpoints(pool, obs)
        self._plans: dict[int, _Plan] = {}  # by id(head), the plan keeping its head alive

    def direct(self, head: ParsedHead, body: bytes, peer: Callable[[], str]) -> bytes | None:
        """A whole request of a known head answered in bytes, or None (see the module
        docstring): only publishes to a channel, and only the ones it accepts."""
        plan = self._plans.get(id(head))
        if plan is None or plan.head is not head:  # (its first time here)
            plan = self._plan(head)
        channels = self._channels
        if plan.channel is None or channels is None:
            return None
        try:
            answer = channels.publish_direct(plan.channel, body)
        except Exception:  # (a bug: the usual way meets it again, and answers it as one)
            answer = None
        if answer is None:  # refused: the usual way says why
            return None
        obs = self._obs
        record = self._record(head.method, head.path, head.fields.get(b"x-request-id"), peer,
                              len(body))
        record.status, record.ttfb, record.bytes_out = 200, obs.clock() - record.started, len(
            answer)
        obs.finish(record, "complete")
        return b"".join((plan.head_start, record.rid, plan.head_end,
                         b"%d\r\n\r\n" % len(answer), answer))

    def refused(self, request: Request | None, rejection: Rejection,
                peer: Callable[[], str]) -> None:
        """A request its connection refused before routing (relay.net.exchange.Refusals):
        recorded as any other, ended ``refused``, its line with the status and the reason;
        with no method or path when its head was never parsed."""
        record = (self._record(b"", b"", None, peer, 0) if request is None else self._record(
            request.method, request.path, request.header(b"x-request-id"), peer, 0))
        record.status, record.reason = rejection.status, rejection.logged
        self._obs.start(record)
        self._obs.finish(record, "refused")

    def _record(self, method: bytes, path: bytes, given: bytes | None,
                peer: Callable[[], str], bytes_in: int) -> Record:
        """The record of one request (every way a request ends makes it here)."""
        obs = self._obs
        return Record(method, path, peer() if obs.log.enabled else "", request_id(given),
                      bytes_in, obs.clock())

    def _plan(self, head: ParsedHead) -> _Plan:
        """The route of requests of ``head`` (:func:`route`), kept: the channel they publish
        to when they can be answered directly, and their answer's head."""
        fields = head.fields
        taken = route(head.method, head.path, fields.get, self._routing)
        channel = (self._channels.direct_channel(head) if taken.way is Way.CHANNELS
                   and self._channels is not None else None)
        plan = _Plan(head, channel, taken.cors)
        plans = self._plans
        if len(plans) >= _PLANS:
            del plans[next(iter(plans))]  # (insertion order: the oldest)
        plans[id(head)] = plan
        return plan

    def __call__(self, ex: Exchange) -> Awaitable[None] | None:
        req = ex.request
        record = self._record(req.method, req.path, req.header(b"x-request-id"), ex.peer,
                              len(req.body))
        self._obs.start(record)  # (a relayed stream is active from now: the gauge)
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
        req = ex.request
        taken = route(req.method, req.path, req.header, self._routing)
        if taken.cors:
            ex.extra = taken.cors
        way = taken.way
        if way is Way.PROXY:
            return self._proxy(ex, record)
        if way is Way.CHANNELS:
            assert self._channels is not None  # (Routing.channels)
            return self._channels.handle(ex, record)
        if way is Way.STREAMS:  # (its own token check: EventSource's too)
            assert self._streams is not None  # (Routing.streams)
            return self._streams.handle(ex, record)
        if way is Way.REFUSED:
            refusal = taken.refusal
            assert refusal is not None
            self._local.error(ex, record, refusal.status, refusal.message, _code(refusal.status))
        elif way is Way.PREFLIGHT:
            self._local.preflight(ex, record, self._guard.cors)
        elif not self._local.serve(ex, record, self._metrics):
            self._local.error(ex, record, 404, "not found: the relay serves /v1/*, /events/*, "
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


class Way(enum.Enum):
    """Which endpoint answers a request."""

    REFUSED = "refused"  # the guard's refusal: a Host not served (421), a foreign Origin (403)
    PREFLIGHT = "preflight"  # a CORS preflight from an allowed origin, answered here
    STREAMS = "streams"  # /v1/streams/*: resumable streams (relay.streams)
    PROXY = "proxy"  # /v1/*: upstream, after the client-token check
    CHANNELS = "channels"  # /events/*: pub/sub channels (relay.channels)
    LOCAL = "local"  # /healthz, /metrics, the demo page, or a 404


@dataclass(frozen=True, slots=True)
class Routing:
    """What routing depends on besides the head, fixed at startup."""

    guard: Guard
    channels: bool  # /events/* is served
    streams: bool  # /v1/streams/* is served


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes (:func:`route`): its endpoint, the refusal when it is refused,
    and the CORS headers its answer carries (none unless its Origin is an allowed one)."""

    way: Way
    cors: Headers
    refusal: Rejection | None = None


_PLAIN = {way: Route(way, []) for way in Way}  # (the usual case: no CORS headers to add)


def route(method: bytes, path: bytes, header: Callable[[bytes], bytes | None],
          routing: Routing) -> Route:
    """The route of a request (see the module docstring): ``header`` gives a field's first
    value. Pure: the same head and settings give the same route."""
    guard = routing.guard
    origin = header(b"origin")
    refused = guard.check(header(b"host"), origin, header(b"sec-fetch-site"), method, path)
    if refused is not None:
        return Route(Way.REFUSED, [], refused)
    cors = _cors_headers(origin, guard.cors)
    if cors is not None and method == b"OPTIONS" and header(
            b"access-control-request-method") is not None:
        way = Way.PREFLIGHT
    elif routing.streams and path.startswith(STREAMS):
        way = Way.STREAMS
    elif path.startswith(b"/v1/"):
        way = Way.PROXY
    elif routing.channels and path.startswith(CHANNELS):
        way = Way.CHANNELS
    else:
        way = Way.LOCAL
    return _PLAIN[way] if cors is None else Route(way, cors)


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

    __slots__ = ("channel", "head", "head_end", "head_start")

    def __init__(self, head: ParsedHead, channel: str | None, cors: Headers) -> None:
        self.head = head  # (kept alive: its id is the plan's key)
        self.channel = channel
        answer, _ = start_response(b"POST", b"1.1", 200, reason_phrase(200),
                                   [(b"content-type", b"application/json"),
                                    (b"x-request-id", _RID), *cors], 0, True)
        self.head_start, rest = answer.split(_RID)
        assert rest.endswith(b"content-length: " + _NO_LENGTH)
        self.head_end = rest[:-len(_NO_LENGTH)]
