"""``RelayStream``: one relayed request, the pump between an upstream connection and a client.

The pump is callbacks, not a loop: the upstream connection's ``data_received`` decodes a read and
calls the sink returned by :meth:`RelayStream.on_head`, which is the client exchange's writer.
The stream itself only takes part at the edges, in its three endings:

* **complete**: the body ended cleanly; the client's body is ended and the connection goes back
  to the pool;
* **client gone**: the upstream connection is closed at once (never pooled), so the upstream
  stops generating (and billing) tokens;
* **upstream failed**: before the head, a 502/504 with an OpenAI-style JSON error; inside an SSE
  body, one final ``data: {"error": ...}`` event and a clean end, so SDKs raise instead of
  hanging; inside any other body, the client connection is cut, so a truncated body never looks
  complete.

Backpressure: when the client's write buffer passes its high-water mark, the stream pauses the
upstream's reads (``client_paused``) and resumes them when it drains (``client_resumed``). So one
stream holds at most the client high-water mark plus one upstream read in user space.
"""

from __future__ import annotations

from .errors import RelayError, RelayShutdown, UpstreamClosed, UpstreamTimeout, sse_error_event
from .headers import (
    Headers,
    client_response_headers,
    header_value,
    is_event_stream,
    upstream_request_headers,
)
from .observe import Observer, Record
from .pool import Pool
from .server import Exchange
from .sse import HEARTBEAT, BoundaryTracker, tail_between_events
from .upstream import ConnState, Sink, UpstreamConnection


class RelayStream:
    """Relays one client request to the upstream origin (see the module docstring)."""

    __slots__ = ("_api_key", "_boundary", "_conn", "_drop_auth", "_eof_framed", "_ex", "_obs",
                 "_pool", "_rec", "_sent", "_sse", "_tail")

    def __init__(self, ex: Exchange, pool: Pool, api_key: str | None, observer: Observer,
                 record: Record, drop_authorization: bool = False) -> None:
        self._ex = ex
        self._obs = observer
        self._rec = record
        self._sent = 0.0
        self._pool = pool
        self._api_key = api_key
        self._drop_auth = drop_authorization
        self._conn: UpstreamConnection | None = None
        self._sse = False
        self._boundary = BoundaryTracker()  # the decode path's view of event boundaries
        self._eof_framed = False  # the upstream body ends at EOF (no length, not chunked)
        self._tail = b""  # last bytes of an EOF-framed event stream, to look for [DONE]

    async def run(self) -> None:
        """Acquire an upstream connection and send the request; then return. From here on the
        exchange is *detached*: upstream and client callbacks drive it to one of its endings,
        so an open stream holds no task, coroutine frame or future."""
        ex = self._ex
        try:
            conn = await self._pool.acquire()
        except RelayError as exc:
            self._failed(exc)
            self._obs.finish(self._rec, _ending(exc))
            ex.respond_error(exc.status, str(exc), exc.type, exc.code,
                             [*exc.headers, (b"x-request-id", self._rec.request_id.encode())])
            return
        except BaseException:
            self._obs.finish(self._rec, "client_disconnect")  # cancelled: the client left
            raise
        if ex.gone:  # the client left while we connected: the request is never sent
            self._pool.release(conn)
            self._obs.finish(self._rec, "client_disconnect")
            return
        self._conn = conn
        ex.listener = self
        ex.detached = True
        req = ex.request
        headers = upstream_request_headers(
            req.headers, host=self._pool.host_header, body_length=len(req.body),
            api_key=self._api_key, drop_authorization=self._drop_auth,
            request_id=self._rec.request_id.encode(),
        )
        conn.send_request(req.method, req.target, headers, req.body, self)
        self._sent = self._obs.clock()

    # -- upstream events (ResponseListener) ----------------------------------------------------

    def on_head(
        self, status: int, reason: bytes, headers: Headers, length: int | None, chunked: bool
    ) -> tuple[Sink, bool]:
        now = self._obs.clock()
        rec = self._rec
        rec.upstream_status = rec.status = status
        rec.ttfb = now - rec.started
        self._obs.upstream_ttfb.observe(now - self._sent)
        self._obs.client_ttfb.observe(rec.ttfb)
        out = client_response_headers(headers, rec.request_id.encode())
        # An encoded (gzip...) event stream is relayed untouched: no heartbeat or error event
        # can be spliced into compressed bytes.
        encoding = header_value(headers, b"content-encoding")
        self._sse = is_event_stream(headers) and encoding in (None, b"identity")
        if self._sse and header_value(out, b"x-accel-buffering") is None:
            out.append((b"x-accel-buffering", b"no"))  # tells an nginx in front not to buffer
        self._eof_framed = length is None and not chunked
        ex = self._ex
        ex.start(status, out, length=length, reason=reason)
        if chunked and ex.chunked:
            # Both hops chunked: forward the upstream's framing as it is (the fast path).
            return ex.write_framed, True
        return (self._write_sse if self._sse else ex.write_pieces), False

    def _write_sse(self, pieces: list[bytes]) -> None:
        # Track where the stream stands (between events or not), for heartbeats and errors.
        for piece in pieces:
            self._boundary.feed(piece)
        if self._eof_framed and pieces:
            self._tail = (self._tail + pieces[-1])[-64:]
        self._ex.write_pieces(pieces)

    def _between_events(self) -> bool:
        """Whether the client's stream stands between two events: from the pass-through
        scanner's last payload bytes (free: it keeps them anyway) or the decode path's
        tracker."""
        conn = self._conn
        if conn is not None and conn.passthrough is not None:
            return tail_between_events(conn.passthrough.tail)
        return self._boundary.at_boundary

    def on_complete(self) -> None:
        if self._sse and self._eof_framed and not _ends_with_done(self._tail):
            # A body framed by the connection's end cannot tell a finished stream from a cut
            # one; OpenAI-style streams end with [DONE], so without it the client is told.
            if self._conn is not None:
                self._conn.close()
            self.on_error(UpstreamClosed("upstream closed the stream without data: [DONE]"))
            return
        self._ex.end()
        if self._conn is not None:
            self._pool.release(self._conn)
        self._end("complete")

    def _end(self, ended: str) -> None:
        conn, rec = self._conn, self._rec
        if conn is not None:
            rec.bytes_out, rec.events = conn.body_bytes, conn.body_events
        self._obs.finish(rec, ended)

    def _failed(self, exc: RelayError) -> None:
        self._obs.upstream_failures.inc(1, (exc.code,))
        if not self._ex.started:
            self._rec.status = exc.status

    def on_error(self, exc: RelayError) -> None:
        ex = self._ex
        self._failed(exc)
        self._end(_ending(exc))
        if not ex.started:
            ex.respond_error(exc.status, str(exc), exc.type, exc.code,
                             [*exc.headers, (b"x-request-id", self._rec.request_id.encode())])
        elif self._sse and ex.can_append:
            if not self._between_events():
                ex.write(b"\n\n")  # end the torn event first; our error must be its own event
            ex.write(sse_error_event(exc))
            ex.end()
        else:
            ex.abort()

    def heartbeat(self) -> bool:
        """A comment line, only where it cannot change what the client parses: in an SSE body
        we can append to, between two events (never after a lone CR, which an LF may complete),
        and not while the client is too slow to take it."""
        ex = self._ex
        if not self._sse or not ex.can_append or ex.gone or ex.ended or ex.flow.paused:
            return False
        if not self._between_events():
            return False
        ex.write(HEARTBEAT)
        self._obs.heartbeats.inc()
        return True

    # -- client events (ExchangeListener) ------------------------------------------------------

    def client_paused(self) -> None:
        self._obs.pauses.inc()
        if self._conn is not None:
            self._conn.gate.pause("client")

    def client_resumed(self) -> None:
        if self._conn is not None:
            self._conn.gate.resume("client")

    def shutdown(self) -> None:
        """The relay stops with this stream still open: the client gets a final error event
        (SSE) or a cut, and the upstream is closed so it stops generating."""
        conn = self._conn
        if conn is not None and conn.state is not ConnState.CLOSED:
            conn.close()
        self.on_error(RelayShutdown("the relay is shutting down; retry the request"))

    def client_gone(self) -> None:
        if self._conn is not None and self._conn.state is not ConnState.CLOSED:
            self._conn.close()
        self._end("client_disconnect")


def _ends_with_done(tail: bytes) -> bool:
    """Whether an event stream's last event is ``data: [DONE]`` (any line-end style)."""
    last = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return last.strip() == b"data: [DONE]" or last.strip() == b"data:[DONE]"


def _ending(exc: RelayError) -> str:
    return "timeout" if isinstance(exc, UpstreamTimeout) else "upstream_error"
