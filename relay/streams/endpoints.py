"""The HTTP side of resumable streams: ``GET /v1/streams/{id}`` resumes, ``POST
/v1/streams/{id}/cancel`` stops.

Resuming is an ``EventSource``-compatible endpoint: the position comes from ``Last-Event-ID``
(what an ``EventSource`` sends when it reconnects), or the ``last_event_id`` query parameter,
or none (everything from the first event). The reader gets the events after that position,
then follows the live stream to its end; a stream that ended and whose last event the reader
already has answers ``204``, which tells an ``EventSource`` to stop reconnecting. Unknown or
expired ids, and streams started with another relay token, are all the same ``404``: an id
never says whether it exists to someone who may not use it.

Cancelling closes the upstream at once (the generation stops), gives every reader a final
``cancelled`` error event and a clean end, and answers ``{"id", "status", "events"}``: how the
stream ended and how many events the upstream produced. A second cancel answers the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ..auth import ClientAuth
from ..errors import RelayError
from ..http1.sse import EVENT_STREAM_HEADERS
from ..http1.target import query_params
from ..net.exchange import Exchange
from ..net.respond import respond, respond_error
from ..ops.metrics import Registry
from ..ops.observer import Observer
from ..ops.record import Record
from .registry import Streams
from .stream import Follower, ResumableStream

PREFIX = b"/v1/streams/"
_ROUTE = re.compile(rb"/v1/streams/([A-Za-z0-9_-]{1,64})(/cancel)?")


class StreamEndpoints:
    """Answers ``/v1/streams/...`` (see the module docstring)."""

    def __init__(self, streams: Streams, auth: ClientAuth, observer: Observer) -> None:
        self.streams, self._auth, self._obs = streams, auth, observer

    def register_figures(self, r: Registry) -> None:
        """The resumable streams' figures, read at scrape time (ops imports no domain: each
        hands the registry callables that read its own counters)."""
        streams, stats = self.streams, self.streams.stats
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

    async def handle(self, ex: Exchange, record: Record) -> None:
        req = ex.request
        m = _ROUTE.fullmatch(req.path)
        query = query_params(req.target)
        authorization = ClientAuth.presented(req.header(b"authorization"), query)
        if not self._auth.allows(authorization):
            self._error(ex, record, 401, "missing or invalid relay token (Authorization: "
                        "Bearer, or the access_token query parameter)", "invalid_api_key",
                        [(b"www-authenticate", b'Bearer realm="relay"')])
            return
        if m is None:
            self._error(ex, record, 404, "not found: /v1/streams/{id} resumes a stream, "
                        "/v1/streams/{id}/cancel stops it", "unknown_url")
            return
        cancel = m.group(2) is not None
        method = req.method
        if (cancel and method != b"POST") or (not cancel and method not in (b"GET", b"HEAD")):
            allow = b"POST" if cancel else b"GET"
            self._error(ex, record, 405, f"use {allow.decode()} here", "method_not_allowed",
                        [(b"allow", allow)])
            return
        try:
            await self._act(ex, record, m.group(1).decode(), cancel,
                            self._auth.owner(authorization), query)
        except RelayError as exc:  # (the shared store, Redis, is away: 503, retry later)
            respond(self._obs, ex, record, exc.status, exc.body(), extra=exc.headers)

    async def _act(self, ex: Exchange, record: Record, stream_id: str, cancel: bool,
                   owner: bytes | None, query: dict[str, str]) -> None:
        stream = await self.streams.find(stream_id)
        if stream is None or not ClientAuth.same_owner(stream.owner, owner):
            self._error(ex, record, 404, "no such stream: unknown, expired, or started with "
                        "another token", "stream_not_found")
            return
        if cancel:
            await self.streams.cancel(stream)
            body = json.dumps({"id": stream.id, "status": stream.status,
                               "events": stream.produced}).encode()
            respond(self._obs, ex, record, 200, body)
        else:
            self._resume(ex, record, stream, query)

    def _resume(self, ex: Exchange, record: Record, stream: ResumableStream,
                query: dict[str, str]) -> None:
        raw = ex.request.header(b"last-event-id")
        given = raw.decode("latin-1").strip() if raw is not None else query.get(
            "last_event_id", "0")
        if not (given.isascii() and given.isdigit()) or len(given) > 18:
            self._error(ex, record, 400, "Last-Event-ID must be an event id of this stream "
                        "(a number)", "invalid_last_event_id")
            return
        pos = stream.position_after(int(given))  # (past the end: a mirror still catching up)
        record.stream_id, record.replayed = stream.id, max(0, len(stream.events) - pos)
        if not stream.live and pos >= len(stream.events):
            record.status, record.ttfb = 204, self._obs.clock() - record.started
            ex.start(204, [(b"x-request-id", record.rid)])
            ex.end()
            self._obs.finish(record, "complete")
            return
        record.status, record.ttfb = 200, self._obs.clock() - record.started
        ex.start(200, [*EVENT_STREAM_HEADERS, (b"x-relay-stream-id", stream.id.encode()),
                       (b"x-request-id", record.rid)])
        stats = self.streams.stats
        stats.resumed += 1
        stats.replayed += record.replayed
        if ex.request.method == b"HEAD":
            ex.end()
            self._obs.finish(record, "complete")
            return
        stream.add(Follower(ex, stream, pos, lambda f, how: self._ended(record, f, how)))

    def _ended(self, record: Record, follower: Follower, how: str) -> None:
        record.bytes_out, record.events = follower.counts()
        self._obs.finish(record, how)

    def _error(self, ex: Exchange, record: Record, status: int, message: str, code: str,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        respond_error(self._obs, ex, record, status, message, code, extra or ())


def _reader(obj: object, name: str) -> Callable[[], float]:
    """Reads ``obj.name`` at scrape time."""
    return lambda: float(getattr(obj, name))
