"""The HTTP side of channels: ``GET /events/{channel}`` subscribes, ``POST`` publishes.

Subscribing (an ``EventSource``, or any SSE client) gets ``text/event-stream``: first a
``retry:`` line (the reconnection time, jittered per subscriber so a restart does not bring
every client back in the same instant), then the replay, then live events, each with an
``id:``. The position comes from ``Last-Event-ID`` (what an ``EventSource`` sends when it
reconnects) or, for a first connection, the ``last_event_id`` query parameter. With relay
tokens on (``--client-token``), a subscriber shows one as ``Authorization: Bearer`` or as the
``access_token`` query parameter (an ``EventSource`` cannot send headers).

Publishing takes ``{"data": <string or any JSON>, "event": <optional name>}`` and answers
``{"id": ..., "subscribers": N}`` (N: this instance's subscribers that got it). With
``--publish-token`` it needs one of those as a bearer token; without, a relay token when those
are on.
"""

from __future__ import annotations

import json
import json.scanner
import random
import re
from collections.abc import Awaitable
from typing import Any

from ..auth import ClientAuth
from ..config import ChannelLimits
from ..http1.known_heads import ParsedHead
from ..http1.sse import EVENT_STREAM_HEADERS
from ..http1.target import query_params
from ..net.exchange import Exchange
from ..net.respond import respond, respond_error
from ..ops.metrics import Registry
from ..ops.observer import Observer
from ..ops.record import Record
from .broker import Broker, BrokerUnavailable
from .events import MAX_ID, RESERVED, ChannelEvent, data_text, parse_id
from .subscriber import Subscriber

PREFIX = b"/events/"
_NAME = re.compile(rb"[A-Za-z0-9._-]{1,128}")
MAX_EVENT = 64 * 1024  # bytes of one published event: data, name and id
_MAX_TEXT = MAX_EVENT - MAX_ID  # (of data and name: room left for the longest id)


class ChannelStats:
    __slots__ = ("publishes", "replayed", "resets")

    def __init__(self) -> None:
        self.publishes = self.replayed = self.resets = 0


class ChannelEndpoints:
    """Answers ``/events/{channel}`` (see the module docstring)."""

    def __init__(self, broker: Broker, limits: ChannelLimits, auth: ClientAuth,
                 publish_auth: ClientAuth, observer: Observer) -> None:
        self.broker, self._limits, self._obs = broker, limits, observer
        self._auth = auth
        # (Tokens are fixed at startup: which check a publish takes, and whether it takes one.)
        self._publish_check = publish_auth if publish_auth.enabled else auth
        self._publish_open = not self._publish_check.enabled
        self.stats = ChannelStats()

    def register_figures(self, r: Registry) -> None:
        """The channels' figures, read at scrape time (ops imports no domain: each hands the
        registry callables that read its own counters)."""
        hub, stats, broker = self.broker.hub, self.stats, self.broker
        r.gauge("relay_channel_subscribers", "Channel subscribers connected to this instance.",
                lambda: hub.subscribers)
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

    def handle(self, ex: Exchange, record: Record) -> Awaitable[None] | None:
        """Answer now, or return what finishes the answer (see relay.net.exchange.Handler)."""
        name = ex.request.path[len(PREFIX):]
        if _NAME.fullmatch(name) is None:
            self._error(ex, record, 400, "channel names are 1 to 128 of A-Z a-z 0-9 . _ -",
                        "invalid_channel")
        elif ex.request.method == b"GET":
            return self._subscribe(ex, record, name.decode())
        elif ex.request.method == b"POST":
            return self._publish(ex, record, name.decode())
        else:
            self._error(ex, record, 405, "channels take GET (subscribe) and POST (publish)",
                        "method_not_allowed", [(b"allow", b"GET, POST, OPTIONS")])
        return None

    async def _subscribe(self, ex: Exchange, record: Record, channel: str) -> None:
        query = query_params(ex.request.target)
        authorization = ClientAuth.presented(ex.request.header(b"authorization"),
                                             query)
        if not self._auth.allows(authorization):
            self._unauthorized(ex, record, "missing or invalid relay token")
            return
        last = ex.request.header(b"last-event-id")
        given = last.decode("latin-1") if last is not None else query.get("last_event_id")
        record.status, record.ttfb = 200, self._obs.clock() - record.started
        ex.start(200, [*EVENT_STREAM_HEADERS, (b"x-request-id", record.rid)])
        retry = self._limits.retry_ms
        ex.write(b"retry: %d\n\n" % random.randint(retry // 2, retry * 3 // 2))
        sub = Subscriber(ex, channel, self._limits.slow_buffer,
                         lambda sub, how: self._ended(record, sub, how))
        self.broker.hub.add(sub)  # live events first; the replay follows; none is lost
        try:
            replay = await self.broker.replay(
                channel, None if given is None else parse_id(given), given is not None)
        except (BrokerUnavailable, TimeoutError):
            sub.close()  # a clean end: the EventSource comes back later, at the same position
            return
        self.stats.replayed += len(replay.events)
        self.stats.resets += replay.reset
        sub.catch_up(replay.events, replay.reset, replay.oldest)

    def _ended(self, record: Record, sub: Subscriber, how: str) -> None:
        record.bytes_out, record.events = sub.counts()
        self._obs.finish(record, how)

    def _publish(self, ex: Exchange, record: Record, channel: str) -> Awaitable[None] | None:
        if not self._publish_open and not self._publish_check.allows(
                ex.request.header(b"authorization")):
            self._unauthorized(ex, record, "missing or invalid publish token")
            return None
        parsed = _parse_publish(ex.request.body)
        if isinstance(parsed, str):
            status = 413 if parsed.startswith("too large") else 400
            self._error(ex, record, status, parsed, "invalid_event")
            return None
        done = self.broker.publish_now(channel, *parsed)
        if done is None:  # a shared broker: wait for Redis
            return self._publish_shared(ex, record, channel, parsed)
        self._published(ex, record, *done)
        return None

    def direct_channel(self, head: ParsedHead) -> str | None:
        """The channel requests of ``head`` publish to, when they can be answered directly
        (:meth:`publish_direct`): a POST to a valid name, with the token a publish needs, to
        an in-memory broker (nothing to wait for). None otherwise."""
        name = head.path[len(PREFIX):]
        if (not head.path.startswith(PREFIX) or head.method != b"POST"
                or _NAME.fullmatch(name) is None or not self.broker.synchronous
                or not (self._publish_open or self._publish_check.allows(
                    head.fields.get(b"authorization")))):
            return None
        return name.decode()

    def publish_direct(self, channel: str, body: bytes) -> bytes | None:
        """A publish the router answers directly: its answer's body, or None when the body
        is refused (the usual way then answers it, with its reason)."""
        parsed = _parse_publish(body)
        if isinstance(parsed, str):
            return None
        done = self.broker.publish_now(channel, *parsed)
        if done is None:  # (not an in-memory broker: direct_channel said no to it)
            return None
        self.stats.publishes += 1
        return _answer(*done)

    async def _publish_shared(self, ex: Exchange, record: Record, channel: str,
                              parsed: tuple[str, str | None]) -> None:
        try:
            event, delivered = await self.broker.publish(channel, *parsed)
        except BrokerUnavailable as exc:
            self._error(ex, record, 503, str(exc), "broker_unavailable",
                        [(b"retry-after", b"1")])
            return
        self._published(ex, record, event, delivered)

    def _published(self, ex: Exchange, record: Record, event: ChannelEvent,
                   delivered: int) -> None:
        self.stats.publishes += 1
        respond(self._obs, ex, record, 200, _answer(event, delivered))

    def _unauthorized(self, ex: Exchange, record: Record, message: str) -> None:
        self._error(ex, record, 401, message + " (Authorization: Bearer)", "invalid_api_key",
                    [(b"www-authenticate", b'Bearer realm="relay"')])

    def _error(self, ex: Exchange, record: Record, status: int, message: str, code: str,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        respond_error(self._obs, ex, record, status, message, code, extra or ())


def _answer(event: ChannelEvent, delivered: int) -> bytes:
    # (An id is digits and a dash: nothing to escape.)
    return b'{"id": "%s", "subscribers": %d}' % (event.id.encode(), delivered)


# json's C scanner, as strict as json.loads (typeshed wants a scanner as its context: a decoder is)
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


_TOO_DEEP = "the body's JSON is nested too deeply"


def _object(text: str) -> Any:
    """``json.loads`` of a text that starts with ``{``, without its three Python-level calls
    (loads, decode, raw_decode) and two regex matches: only white space may follow."""
    try:
        doc, end = _scan(text, 0)
    except StopIteration:  # (the scanner's way of saying "no JSON value here")
        raise ValueError("not a JSON value") from None
    if end != len(text) and text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after the JSON object")
    return doc


def _parse_publish(body: bytes) -> tuple[str, str | None] | str:
    """(data, event name) of a publish's JSON body, or why it is refused."""
    try:
        # UTF-8 (RFC 8259 8.1) decoded here when it surely is: json's own detection of UTF-16
        # and -32 (a NUL in the first bytes) costs a Python call per publish.
        utf8 = body[:1] == b"{" and body[1:2] != b"\0"
        doc: Any = _object(body.decode()) if utf8 else json.loads(body or b"null")
    except ValueError:
        return "the body is not JSON: send {\"data\": ..., \"event\": optional name}"
    except RecursionError:  # (json's scanner recurses per level: depth is bounded by the stack)
        return _TOO_DEEP
    if not isinstance(doc, dict) or "data" not in doc:
        return "the body must be a JSON object with \"data\" (and an optional \"event\")"
    event = doc.get("event")
    if event is not None and (not isinstance(event, str) or not event
                              or any(c in event for c in "\r\n\0")):
        return "\"event\" must be a non-empty string without line ends"
    try:
        data = data_text(doc["data"])
    except RecursionError:
        return _TOO_DEEP
    try:  # (JSON's \u escapes can make a lone surrogate, which no UTF-8 byte sequence is)
        size = len(data.encode())
        if event is not None:
            size += len(event.encode())
    except UnicodeEncodeError:
        return "\"data\" and \"event\" must be Unicode text (a lone surrogate is not)"
    if size > _MAX_TEXT:
        return (f"too large: an event's data, name and id together are at most {MAX_EVENT} "
                f"bytes")
    if event is not None and event.startswith(RESERVED):
        return f"\"event\" names starting with {RESERVED!r} are the relay's own"
    return data, event
