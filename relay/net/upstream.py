"""The upstream side: one ``asyncio.Protocol`` per upstream socket, h11 client for the heads.

A connection moves through explicit states::

    NEW --send_request--> ACTIVE --body complete, reusable--> IDLE --send_request--> ACTIVE ...
                             '--error / not reusable / closed by the pump--> CLOSED

For each request a fresh ``h11.Connection(CLIENT)`` writes the request and parses the response
head, which goes to the listener (the pump) as a frozen
:class:`~relay.http1.messages.ResponseHead`. The pump answers with the :class:`BodyForm` it
wants and the *sink* that takes it. From then on the body bytes bypass h11: a reader from
:mod:`relay.http1.readers` (or, for :attr:`BodyForm.FRAMED`, the pass-through scanner) turns
each socket read into pieces, which go straight to the sink (the client exchange's writer). So
one upstream read costs one scan and one client write (one ``writev`` however many events the
read held), all inside ``data_received``, with no queue and no task switch.

A connection is reused only if its response said keep-alive, its body was delimited by its own
framing, and not one byte arrived past the body's end: any leftover byte (RFC 9112 6.3) means
the connection is out of step and would serve a stranger a stale response.

Deadlines: the first-byte deadline until the head arrives, then the idle-read deadline (which
does not run while the client's backpressure holds reads paused), checked by the pool's shared
:class:`~relay.net.deadlines.Deadlines` tick rather than a timer per connection.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Protocol, cast

import h11

from ..config import Limits, Timeouts
from ..errors import RelayError, UpstreamClosed, UpstreamProtocolError, UpstreamTimeout
from ..http1.headers import connection_tokens
from ..http1.messages import Headers, ResponseHead
from ..http1.passthrough import ChunkedPassthrough
from ..http1.readers import (
    BodyReader,
    ChunkedReader,
    CloseReader,
    FramingError,
    declared_length,
    response_reader,
)
from ..http1.sse import tail_between_events
from ..http1.writers import request_head
from .deadlines import Deadlines
from .sockets import tune_transport

# Takes the pieces decoded from one socket read (never empty, never with empty pieces).
Sink = Callable[[list[bytes]], None]


class BodyForm(enum.Enum):
    """How the pump wants the body: decoded payload pieces, or (a chunked body to a chunked
    client) still chunk-framed, to be written as it is."""

    PAYLOAD = "payload"
    FRAMED = "framed"


class ResponseListener(Protocol):
    """The receiver of one upstream response (the pump)."""

    def on_head(self, head: ResponseHead) -> tuple[BodyForm, Sink]:
        """The head arrived: the body form wanted (FRAMED only if ``head.chunked``), and the
        callable that takes it."""
        ...

    def on_complete(self) -> None: ...
    def on_failure(self, exc: RelayError) -> None: ...

    def on_silence(self) -> bool:
        """The body has been silent for the heartbeat period: True if a heartbeat went out."""
        ...


class ConnState(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to the upstream origin (see the module docstring)."""

    def __init__(self, limits: Limits, timeouts: Timeouts, deadlines: Deadlines,
                 on_closed: Callable[[UpstreamConnection], None] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._limits = limits
        self._timeouts = timeouts
        self._on_closed = on_closed
        self._loop = loop or asyncio.get_running_loop()
        self._deadlines = deadlines
        self.state = ConnState.NEW
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.idle_since = 0.0
        self._h11: h11.Connection | None = None
        self._method = b""
        self._listener: ResponseListener | None = None
        self._reader: BodyReader | None = None  # set while a body is read
        self._sink: Sink | None = None
        self._tail = b""  # the last payload bytes of a body no longer read
        self._reusable = False
        self._reads_paused = False
        self._sent_at = self._last_read = self._last_beat = 0.0
        self._body_bytes = self._body_events = 0  # of the current response's body, as read

    # -- the pool's interface ------------------------------------------------------------------

    def is_available(self) -> bool:
        """Usable for a new request: fresh or idle, and the peer has not closed it meanwhile."""
        return self.state in (ConnState.NEW, ConnState.IDLE) and not self.transport.is_closing()

    def has_expired(self, now: float, idle_timeout: float) -> bool:
        return self.state is ConnState.IDLE and now - self.idle_since > idle_timeout

    def close(self) -> None:
        """Close at once, dropping buffers; the upstream sees the connection end immediately."""
        self._listener = None
        self._drop_reader()
        self._set_closed()
        if self.transport is not None:  # (None: closed before its connection was made)
            self.transport.abort()

    # -- the pump's interface ------------------------------------------------------------------

    def send_request(self, method: bytes, target: bytes, headers: Headers, body: bytes,
                     listener: ResponseListener) -> None:
        """Write one request; its response goes to ``listener``. Only on an available
        connection (the pool hands out no other)."""
        if not self.is_available():
            raise RuntimeError(f"send_request on a {self.state.value} upstream connection")
        self.state = ConnState.ACTIVE
        self._listener = listener
        self._method = method
        self._tail = b""
        self._body_bytes = self._body_events = 0
        conn = self._h11 = h11.Connection(h11.CLIENT,
                                          max_incomplete_event_size=self._limits.max_head_size)
        # h11 is told of the request (its method, for reading the response); the head itself
        # is our own serialization of headers validated where they came from: h11's check and
        # writing of every header was an eighth of a short stream's CPU.
        host = headers[:1] if headers and headers[0][0] == b"host" else [
            h for h in headers if h[0] == b"host"]
        conn.send(h11.Request(method=method, target=target, headers=host))
        head = request_head(method, target, headers)
        # The body (framed by the Content-Length set in headers.py) is written as it is: this
        # h11 connection only has to parse the response head, then it is dropped, so walking
        # it through Data/EndOfMessage would be Python work per request for nothing.
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        self._sent_at = self._loop.time()
        self._deadlines.add(self)

    def pause_reads(self) -> None:
        """Stop reading (the client is slow): the upstream's bytes wait in the kernel."""
        if not self._reads_paused and not self.transport.is_closing():
            self._reads_paused = True
            self.transport.pause_reading()

    def resume_reads(self) -> None:
        if self._reads_paused:
            self._reads_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def payload_tail(self) -> bytes:
        """The last payload bytes of the current (or last) response body."""
        return self._reader.tail if self._reader is not None else self._tail

    def at_event_boundary(self) -> bool:
        """Whether the body forwarded so far stands between two events (an event stream's)."""
        return tail_between_events(self.payload_tail()[-4:])

    def counts(self) -> tuple[int, int]:
        """Body bytes read (framing included when passed through) and blank lines seen (events,
        counted per read at C speed: no parse)."""
        return self._body_bytes, self._body_events

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = transport = cast(asyncio.Transport, transport)
        tune_transport(transport, self._limits.write_high_water, self._limits.write_low_water,
                       rcvbuf=self._limits.upstream_rcvbuf, sndbuf=self._limits.socket_buffer)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is not None:  # the hot path: body bytes
            self._last_read = self._loop.time()
            self._body_bytes += len(data)
            self._body_events += data.count(b"\n\n")
            sink = self._sink
            assert sink is not None
            try:
                pieces = reader.feed(data)
            except FramingError as exc:
                if exc.pieces:
                    sink(exc.pieces)
                self._fail(UpstreamProtocolError(f"upstream sent a broken body: {exc}"))
                return
            if pieces:
                sink(pieces)
            if reader.done:
                self._finish()
        elif self.state is ConnState.ACTIVE and self._h11 is not None:
            self._h11.receive_data(data)
            self._read_head()
        else:
            self.close()  # bytes on an idle connection: the upstream is confused, never reuse

    def eof_received(self) -> bool:
        reader = self._reader
        if reader is not None:
            try:
                reader.feed_eof()
            except FramingError as exc:
                self._fail(UpstreamClosed(f"upstream closed the stream early: {exc}"))
                return False
            self._reusable = False
            self._finish()
        elif self.state is ConnState.ACTIVE:
            self._fail(UpstreamClosed("upstream closed the connection without a response"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        was_active = self.state is ConnState.ACTIVE
        self._set_closed()
        if was_active:
            why = f": {exc}" if exc else ""
            self._fail(UpstreamClosed(f"upstream connection lost{why}"))

    # -- the response ----------------------------------------------------------------------------

    def _read_head(self) -> None:
        conn = self._h11
        assert conn is not None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(UpstreamProtocolError(f"upstream sent an invalid response: {exc}"))
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Response):
                self._on_head(event, conn.trailing_data[0])
                return
            if isinstance(event, h11.ConnectionClosed):
                self._fail(UpstreamClosed("upstream closed the connection without a response"))
                return
            # InformationalResponse (1xx): nothing to relay, read on.

    def _on_head(self, response: h11.Response, rest: bytes) -> None:
        """``rest``: body bytes that came in the same read as the head."""
        assert self._listener is not None
        self._h11 = None
        status, headers = response.status_code, list(response.headers)
        reader: BodyReader = response_reader(self._method, status, headers)
        keep_alive = response.http_version == b"1.1" and b"close" not in connection_tokens(headers)
        self._reusable = keep_alive and not isinstance(reader, CloseReader)
        length = declared_length(self._method, status, headers, reader)
        chunked = isinstance(reader, ChunkedReader)
        form, self._sink = self._listener.on_head(
            ResponseHead(status, response.reason, headers, length, chunked))
        if form is BodyForm.FRAMED:
            assert chunked, "a framed body needs a chunked upstream body"
            reader = ChunkedPassthrough()
        self._reader = reader
        self._last_read = self._loop.time()
        if reader.done:
            reader.feed(rest)  # (a body-less response: leftover bytes go to ``trailing``)
            self._finish()
        elif rest:
            self.data_received(rest)

    def _finish(self) -> None:
        reader, listener = self._reader, self._listener
        assert reader is not None and listener is not None
        self._listener = None
        self._drop_reader()
        self._deadlines.discard(self)
        if self._reusable and not reader.trailing and not self.transport.is_closing():
            # The last read may have paused reads (the client's buffer filled on it): the
            # stream is over, so that pause ends here, before the pool hands this out again.
            self.resume_reads()
            self.state = ConnState.IDLE
            self.idle_since = self._loop.time()
        else:
            self.close()
        listener.on_complete()

    def _fail(self, exc: RelayError) -> None:
        listener = self._listener
        if self.state is not ConnState.CLOSED:
            self.close()
        else:
            self._listener = None
            self._drop_reader()
        if listener is not None:
            listener.on_failure(exc)

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._tail = self._reader.tail  # still asked for when the pump reports an error
            self._reader = None
        self._sink = None

    def _set_closed(self) -> None:
        if self.state is ConnState.CLOSED:
            return
        self.state = ConnState.CLOSED
        self._deadlines.discard(self)
        if self._on_closed is not None:
            self._on_closed(self)

    # -- deadlines (checked by the pool's shared Deadlines tick) -------------------------------

    def check_deadline(self, now: float) -> None:
        listener = self._listener
        if listener is None:
            self._deadlines.discard(self)
            return
        if self._reader is None:
            if now - self._sent_at >= self._timeouts.first_byte:
                t = self._timeouts.first_byte
                self._fail(UpstreamTimeout(f"upstream did not answer within {t:g} s"))
            return
        if self._reads_paused:  # the client is slow, not the upstream: the idle clock waits
            self._last_read = now
        elif now - self._last_read >= self._timeouts.read:
            t = self._timeouts.read
            self._fail(UpstreamTimeout(f"upstream sent nothing for {t:g} s"))
            return
        beat = self._timeouts.heartbeat
        silent = now - max(self._last_read, self._last_beat)
        if beat > 0 and silent >= beat and listener.on_silence():
            self._last_beat = now
