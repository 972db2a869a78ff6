"""The upstream side: one ``asyncio.Protocol`` per upstream socket, h11 client for the heads.

A connection moves through explicit states::

    NEW --send_request--> ACTIVE --body complete, keep-alive--> IDLE --send_request--> ACTIVE ...
                             \\--error / not reusable / client gone--> CLOSED

For each request a fresh ``h11.Connection(CLIENT)`` writes the request and parses the response
head. From then on the body bytes bypass h11: a decoder from :mod:`relay.framing` turns each
socket read into payload pieces, which go straight to the *sink* the listener returned for the
head (for the relay: the client exchange's chunk writer). So one upstream read costs one decode
and one client write (one ``writev`` however many events the read held), all inside
``data_received``, with no queue and no task switch.

Deadlines: the first-byte deadline until the head arrives, then the idle-read deadline (which
does not run while the client's backpressure holds reads paused), checked by the pool's shared
:class:`relay.deadlines.Deadlines` tick rather than a timer per connection.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Protocol, cast

import h11

from .config import Limits, Timeouts
from .deadlines import Deadlines
from .errors import RelayError, UpstreamClosed, UpstreamProtocolError, UpstreamTimeout
from .flow import ReadGate
from .framing import (
    BodyDecoder,
    ChunkedDecoder,
    ChunkedPassthrough,
    CloseDecoder,
    FramingError,
    LengthDecoder,
    response_decoder,
)
from .headers import Headers, connection_tokens
from .tuning import tune_transport

# Takes the payload pieces decoded from one socket read (never empty, never with empty pieces).
Sink = Callable[[list[bytes]], None]


class ResponseListener(Protocol):
    """The receiver of one upstream response (the relay stream)."""

    def on_head(
        self, status: int, reason: bytes, headers: Headers, length: int | None, chunked: bool
    ) -> tuple[Sink, bool]:
        """The head arrived. Return the callable that takes the body, and whether it takes the
        body still chunk-framed (possible when the upstream body is chunked, ``chunked``, and the
        client's is too) rather than as payload pieces."""
        ...

    def on_complete(self) -> None: ...
    def on_error(self, exc: RelayError) -> None: ...

    def heartbeat(self) -> bool:
        """The body has been silent for the heartbeat period: send one if it is safe now."""
        ...


class ConnState(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to the upstream origin (see the module docstring)."""

    def __init__(
        self,
        limits: Limits,
        timeouts: Timeouts,
        deadlines: Deadlines,
        on_closed: Callable[[UpstreamConnection], None] | None = None,
    ) -> None:
        self._limits = limits
        self._timeouts = timeouts
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self.state = ConnState.NEW
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.gate: ReadGate = None  # type: ignore[assignment]
        self.idle_since = 0.0
        self._h11: h11.Connection | None = None
        self._method = b""
        self._listener: ResponseListener | None = None
        self._decoder: BodyDecoder | None = None
        self._sink: Sink | None = None
        self._reusable = False
        self.passthrough: ChunkedPassthrough | None = None  # kept after the end: its ``tail``
        self._deadlines = deadlines
        self._sent_at = 0.0
        self._last_read = 0.0
        self._last_beat = 0.0
        self.body_bytes = 0  # of the current response's body, as read
        self.body_events = 0

    # -- pool interface ------------------------------------------------------------------------

    def is_available(self) -> bool:
        """Usable for a new request: fresh or idle, and the peer has not closed it meanwhile."""
        return self.state in (ConnState.NEW, ConnState.IDLE) and not self.transport.is_closing()

    def has_expired(self, now: float, idle_timeout: float) -> bool:
        return self.state is ConnState.IDLE and now - self.idle_since > idle_timeout

    def close(self) -> None:
        """Close at once, dropping buffers; the upstream sees the connection end immediately."""
        self._listener = None
        self._decoder = self._sink = None
        self._set_closed()
        if self.transport is not None:  # (None: closed before its connection was made)
            self.transport.abort()

    # -- request -------------------------------------------------------------------------------

    def send_request(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: bytes,
        listener: ResponseListener,
    ) -> None:
        assert self.is_available(), self.state
        self.state = ConnState.ACTIVE
        self._listener = listener
        self._method = method
        self.passthrough = None
        self.body_bytes = self.body_events = 0
        conn = self._h11 = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self._limits.max_head_size
        )
        head = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        # The body (framed by the Content-Length set in headers.py) is written as it is: this
        # h11 connection only has to parse the response head, then it is dropped, so walking
        # it through Data/EndOfMessage would cost ~6 us per request for nothing.
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        self._sent_at = self._loop.time()
        self._deadlines.add(self)

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.gate = ReadGate(transport)
        tune_transport(transport, self._limits.write_high_water, self._limits.write_low_water,
                       rcvbuf=self._limits.upstream_rcvbuf, sndbuf=self._limits.socket_buffer)

    def data_received(self, data: bytes) -> None:
        decoder = self._decoder
        if decoder is not None:  # the hot path: body bytes
            self._last_read = self._loop.time()
            # Counted here, read once when the stream ends (metrics, access log). Events are
            # blank lines: one C-level count per read, not a parse.
            self.body_bytes += len(data)
            self.body_events += data.count(b"\n\n")
            sink = self._sink
            assert sink is not None
            try:
                pieces = decoder.feed(data)
            except FramingError as exc:
                if exc.pieces:
                    sink(exc.pieces)
                self._fail(UpstreamProtocolError(f"upstream sent a broken body: {exc}"))
                return
            if pieces:
                sink(pieces)
            if decoder.done:
                self._finish()
        elif self.state is ConnState.ACTIVE and self._h11 is not None:
            self._h11.receive_data(data)
            self._read_head()
        else:
            self.close()  # bytes on an idle connection: the upstream is confused, never reuse

    def eof_received(self) -> bool:
        decoder = self._decoder
        if decoder is not None:
            try:
                decoder.feed_eof()
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

    # -- response ------------------------------------------------------------------------------

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
                self._on_head(event)
                return
            if isinstance(event, h11.ConnectionClosed):
                self._fail(UpstreamClosed("upstream closed the connection without a response"))
                return
            # InformationalResponse (1xx): nothing to relay, read on.

    def _on_head(self, response: h11.Response) -> None:
        conn = self._h11
        assert conn is not None and self._listener is not None
        rest, _ = conn.trailing_data  # body bytes that came in the same read as the head
        self._h11 = None
        headers = list(response.headers)
        decoder: BodyDecoder = response_decoder(self._method, response.status_code, headers)
        keep_alive = response.http_version == b"1.1" and b"close" not in connection_tokens(headers)
        self._reusable = keep_alive and not isinstance(decoder, CloseDecoder)
        # The client gets Content-Length only for a length-framed body that has one.
        no_body = self._method == b"HEAD" or response.status_code in (204, 304)
        length = decoder.remaining if isinstance(decoder, LengthDecoder) and not no_body else None
        chunked = isinstance(decoder, ChunkedDecoder)
        self._sink, framed = self._listener.on_head(
            response.status_code, response.reason, headers, length, chunked
        )
        if framed and chunked:
            decoder = self.passthrough = ChunkedPassthrough()
        self._decoder = decoder
        self._last_read = self._loop.time()
        if decoder.done:
            self._finish()
        elif rest:
            self.data_received(rest)

    def _finish(self) -> None:
        decoder, listener = self._decoder, self._listener
        assert decoder is not None and listener is not None
        self._decoder = self._sink = self._listener = None
        self._deadlines.discard(self)
        if self._reusable and not decoder.trailing and not self.transport.is_closing():
            # The last read may have paused reads (the client's buffer filled on it): the
            # stream is over, so that pause ends here, before the pool hands this out again.
            self.gate.clear()
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
            self._decoder = self._sink = None
        if listener is not None:
            listener.on_error(exc)

    def _set_closed(self) -> None:
        if self.state is ConnState.CLOSED:
            return
        self.state = ConnState.CLOSED
        self._deadlines.discard(self)
        if self._on_closed is not None:
            self._on_closed(self)

    # -- deadlines (checked by the pool's shared Deadlines tick) -------------------------------

    def check_deadline(self, now: float) -> None:
        if self._listener is None:
            self._deadlines.discard(self)
            return
        if self._decoder is None:
            if now - self._sent_at >= self._timeouts.first_byte:
                t = self._timeouts.first_byte
                self._fail(UpstreamTimeout(f"upstream did not answer within {t:g} s"))
            return
        if self.gate.paused:  # the client is slow, not the upstream: the idle clock waits
            self._last_read = now
        elif now - self._last_read >= self._timeouts.read:
            t = self._timeouts.read
            self._fail(UpstreamTimeout(f"upstream sent nothing for {t:g} s"))
            return
        beat = self._timeouts.heartbeat
        silent = now - max(self._last_read, self._last_beat)
        if beat > 0 and silent >= beat and self._listener.heartbeat():
            self._last_beat = now
