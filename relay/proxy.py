"""One relayed request: acquire an upstream connection, send, pump, and end in one of three ways.

The pump is callbacks, not a loop: the upstream connection's ``data_received`` reads a body
piece and calls the sink :meth:`ProxyRequest.on_head` chose, which is the client exchange's
writer. So an open stream holds no task, coroutine frame or future. The request itself only
takes part at the edges, in its three endings, each in one method:

* :meth:`~ProxyRequest._complete`: the body ended cleanly; the client's body is ended and
  the upstream connection goes back to the pool;
* :meth:`~ProxyRequest._client_gone`: the upstream connection is closed at once (never pooled),
  so the upstream stops generating (and billing) tokens, whatever the phase: connecting,
  waiting for the head, or streaming;
* :meth:`~ProxyRequest._upstream_failed`: before the head, a 502/503/504 with an OpenAI-style
  JSON error; inside an event stream, one final ``data: {"error": ...}`` event and a clean end,
  so SDKs raise instead of hanging; inside any other body, the client connection is cut, so a
  truncated body never looks complete.

Backpressure: when the client's write buffer passes its high-water mark, the upstream's reads
pause (``on_client_paused``) and resume when it drains (``on_client_resumed``). So one stream
holds at most the client high-water mark plus one upstream read in user space.
"""

from __future__ import annotations

from .errors import (
    RelayError,
    RelayShutdown,
    ResumeCapacity,
    UpstreamClosed,
    UpstreamTimeout,
    sse_error_event,
)
from .http1.headers import (
    client_response_headers,
    header_value,
    is_event_stream,
    upstream_request_headers,
)
from .http1.messages import ResponseHead
from .http1.sse import HEARTBEAT, ends_with_done
from .net.exchange import Exchange
from .net.pool import Pool
from .net.upstream import BodyForm, ConnState, Sink, UpstreamConnection
from .ops.observer import Observer
from .ops.record import Record
from .streams.registry import Streams
from .streams.stream import Follower, ResumableStream


class ProxyRequest:
    """Relays one client request to the upstream origin (see the module docstring)."""

    __slots__ = ("_api_key", "_conn", "_drop_auth", "_ended", "_eof_framed", "_ex", "_obs",
                 "_owner", "_pool", "_rec", "_sent", "_sse", "_stream", "_streams")

    def __init__(self, ex: Exchange, pool: Pool, api_key: str | None, observer: Observer,
                 record: Record, drop_authorization: bool = False,
                 streams: Streams | None = None, owner: bytes | None = None) -> None:
        self._ex = ex
        self._obs = observer
        self._rec = record
        self._pool = pool
        self._api_key = api_key
        self._drop_auth = drop_authorization
        self._conn: UpstreamConnection | None = None
        self._sent = 0.0
        self._sse = False  # an identity-encoded event stream: heartbeats and error events fit
        self._eof_framed = False  # the upstream body ends at EOF (no length, not chunked)
        self._ended = False
        # Resumable (X-Relay-Resumable: 1, and the relay has streams): see relay/streams/.
        resumable = ex.request.header(b"x-relay-resumable") == b"1"
        self._streams = streams if resumable else None
        self._owner = owner
        self._stream: ResumableStream | None = None

    async def run(self) -> None:
        """Acquire an upstream connection and send the request; then return. From here on the
        exchange's callbacks drive the request to one of its endings."""
        ex = self._ex
        ex.listen(self)  # from now on the client's events come here, in every phase
        if self._streams is not None and not self._streams.has_room():
            self._upstream_failed(ResumeCapacity())
            return
        try:
            conn = await self._open_connection()
        except RelayError as exc:
            self._upstream_failed(exc)
            return
        if self._ended:  # the client left (or the relay stopped) while we connected
            self._pool.put_back(conn)
            return
        self._conn = conn
        req = ex.request
        headers = upstream_request_headers(
            req.headers, host=self._pool.host_header, body_length=len(req.body),
            api_key=self._api_key, drop_authorization=self._drop_auth,
            request_id=self._rec.rid,
        )
        conn.send_request(req.method, req.target, headers, req.body, self)
        self._sent = self._obs.clock()

    async def _open_connection(self) -> UpstreamConnection:
        """A connection still open: one the upstream closed between its connect and now (so
        nothing was sent on it) is replaced once; a second such is a 502."""
        for _ in range(2):
            conn = await self._pool.acquire()
            if conn.is_available() or self._ended:
                return conn
            self._pool.put_back(conn)  # (closed: the pool lets it go)
        raise UpstreamClosed("upstream closed the connection before the request was sent")

    # -- upstream events (ResponseListener) ----------------------------------------------------

    def on_head(self, head: ResponseHead) -> tuple[BodyForm, Sink]:
        now = self._obs.clock()
        rec = self._rec
        rec.upstream_status = rec.status = head.status
        rec.ttfb = now - rec.started
        self._obs.upstream_ttfb.observe(now - self._sent)
        self._obs.client_ttfb.observe(rec.ttfb)
        out = client_response_headers(head.headers, rec.rid)
        # An encoded (gzip...) event stream is relayed untouched: no heartbeat or error event
        # can be spliced into compressed bytes.
        encoding = header_value(head.headers, b"content-encoding")
        self._sse = is_event_stream(head.headers) and encoding in (None, b"identity")
        if self._sse and header_value(out, b"x-accel-buffering") is None:
            out.append((b"x-accel-buffering", b"no"))  # tells an nginx in front not to buffer
        self._eof_framed = head.length is None and not head.chunked
        if self._streams is not None and head.status == 200 and self._sse:
            stream = self._streams.create(self._owner)
            if stream is not None:
                return self._resumable(stream, head, out)
        ex = self._ex
        ex.start(head.status, out, length=head.length, reason=head.reason)
        if head.chunked and ex.chunked:
            return BodyForm.FRAMED, ex.write_framed  # both hops chunked: the fast path
        return BodyForm.PAYLOAD, ex.write_pieces

    def _resumable(self, stream: ResumableStream, head: ResponseHead,
                   out: list[tuple[bytes, bytes]]) -> tuple[BodyForm, Sink]:
        """The stream outlives this client: the body goes into ``stream``, whose first
        reader is this client (the numbered events change the length: chunked, or
        close-delimited to HTTP/1.0)."""
        self._stream = stream
        self._rec.stream_id = stream.id
        stream.stop_upstream = self._close_upstream
        out = [(n, v) for n, v in out if n != b"x-relay-stream-id"]  # (ours: the only one)
        out.append((b"x-relay-stream-id", stream.id.encode()))
        self._ex.start(head.status, out, reason=head.reason)
        stream.add(Follower(self._ex, stream, 0, self._finish_record))
        return BodyForm.PAYLOAD, stream.feed

    def _finish_record(self, _reader: Follower, ended: str) -> None:
        self._finish(ended)  # (counted as read from the upstream, as any relayed request)

    def on_complete(self) -> None:
        conn = self._conn
        stream = self._stream
        if stream is not None:
            if self._eof_framed and conn is not None \
                    and not ends_with_done(conn.payload_tail()):
                exc = UpstreamClosed("upstream closed the stream without data: [DONE]")
                stream.end(str(exc), exc.code, exc.type)
                return
            if not stream.live:  # ended by the relay in this same read: closing, not pooled
                self._close_upstream()
                return
            stream.stop_upstream = None
            stream.complete()
            if conn is not None:
                self._pool.put_back(conn)
            return
        if self._sse and self._eof_framed and conn is not None \
                and not ends_with_done(conn.payload_tail()):
            # A body framed by the connection's end cannot tell a finished stream from a cut
            # one; OpenAI-style streams end with [DONE], so without it the client is told.
            self._upstream_failed(UpstreamClosed("upstream closed the stream without "
                                                 "data: [DONE]"))
            return
        self._complete()

    def on_failure(self, exc: RelayError) -> None:
        if self._stream is not None:  # readers get the error as the stream's last event
            self._obs.upstream_failures.inc(1, (exc.code,))
            self._stream.end(str(exc), exc.code, exc.type)
            return
        self._upstream_failed(exc)

    def on_silence(self) -> bool:
        """A heartbeat comment, only where it cannot change what the client parses: in an
        event stream we can append to, between two events (never after a lone CR, which an LF
        may complete), and not while the client is too slow to take it."""
        if self._stream is not None:
            sent = self._stream.heartbeat()
            if sent:
                self._obs.heartbeats.inc()
            return sent
        ex, conn = self._ex, self._conn
        if not self._sse or not ex.appendable or not ex.open or ex.flow.paused:
            return False
        if conn is None or not conn.at_event_boundary():
            return False
        ex.write(HEARTBEAT)
        self._obs.heartbeats.inc()
        return True

    # -- client events (ExchangeListener) ------------------------------------------------------

    def on_client_paused(self) -> None:
        self._obs.pauses.inc()
        if self._conn is not None:
            self._conn.pause_reads()

    def on_client_resumed(self) -> None:
        if self._conn is not None:
            self._conn.resume_reads()

    def on_client_gone(self) -> None:
        self._client_gone()

    def on_draining(self) -> None:
        """A relayed stream finishes during a drain (up to the drain timeout)."""

    def on_shutdown(self) -> None:
        """The relay stops with this request still open: the client gets a final error event
        (SSE), a 503 (no head yet) or a cut, and the upstream is closed so it stops
        generating."""
        self._upstream_failed(RelayShutdown("the relay is shutting down; retry the request"))

    # -- the three endings (each runs at most once, and only the first of them) --------------

    def _complete(self) -> None:
        if not self._finish("complete"):
            return
        self._ex.end()
        if self._conn is not None:
            self._pool.put_back(self._conn)

    def _client_gone(self) -> None:
        if self._finish("client_disconnect"):
            self._close_upstream()

    def _upstream_failed(self, exc: RelayError) -> None:
        if self._ended:
            return
        ex = self._ex
        self._obs.upstream_failures.inc(1, (exc.code,))
        if not ex.started:
            self._rec.status = exc.status
        self._finish("timeout" if isinstance(exc, UpstreamTimeout) else "upstream_error")
        self._close_upstream()
        if not ex.started:
            ex.respond_error(exc.status, str(exc), exc.type, exc.code,
                             [*exc.headers, (b"x-request-id", self._rec.rid)])
        elif self._sse and ex.appendable:
            if self._conn is not None and not self._conn.at_event_boundary():
                ex.write(b"\n\n")  # end the torn event first; our error must be its own event
            ex.write(sse_error_event(exc))
            ex.end()
        else:
            ex.abort()

    def _close_upstream(self) -> None:
        conn = self._conn
        if conn is not None and conn.state is not ConnState.CLOSED:
            conn.close()  # the upstream sees the connection end at once: it stops generating

    def _finish(self, ended: str) -> bool:
        """Close the record with how the request ended; False if it had ended already."""
        if self._ended:
            return False
        self._ended = True
        rec, conn = self._rec, self._conn
        if conn is not None:
            rec.bytes_out, rec.events = conn.counts()
        self._obs.finish(rec, ended)
        return True
