"""The client side: an ``asyncio.Protocol`` per connection driving an h11 server ``Connection``.

Bytes from the socket go into h11 (``receive_data``), which turns them into events
(``next_event``): a ``Request`` head, ``Data`` for the body, ``EndOfMessage``. When a request is
complete, the protocol hands an :class:`Exchange` to the handler in a task. The handler answers
through the exchange; when the response ends and both sides are DONE, ``start_next_cycle()``
makes the connection ready for the next keep-alive request.

Pipelining: if the client sends its next request before our response ended, h11 returns
``PAUSED`` instead of parsing it. We stop reading the socket (so a pipelining client cannot make
us buffer without limit) and pick up the buffered bytes after the current response.

HTTP/1.0 clients get no chunked encoding: h11 marks their responses close-delimited and we close
the connection after the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, cast

import h11

from .config import Limits, Timeouts
from .errors import ClientGone, error_body
from .flow import WriteFlow
from .framing import chunk
from .headers import Headers
from .tuning import tune_transport
from .validate import HeadReader, check_head

log = logging.getLogger("relay.server")


@dataclass(slots=True)
class HttpRequest:
    """A complete client request; the body is read whole (bounded by ``max_body_size``)."""

    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes
    body: bytes

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]


class ExchangeListener(Protocol):
    """What a callback-driven handler (the relay pump) hears about its client."""

    def client_paused(self) -> None: ...
    def client_resumed(self) -> None: ...
    def client_gone(self) -> None: ...
    def shutdown(self) -> None:
        """The server stops now: end the response as cleanly as the body allows."""


Handler = Callable[["Exchange"], Awaitable[None]]


def _drop(data: object) -> None:
    """The writer of a finished exchange (a plain function: no reference cycle)."""

# Body modes of a response.
_NONE, _CHUNKED, _H11 = 0, 1, 2


class Exchange:
    """One request/response cycle, the handler's view of the client connection.

    ``start()`` sends the response head and picks the body framing: ``Content-Length`` when the
    length is known, otherwise chunked for HTTP/1.1 or close-delimited for HTTP/1.0. ``write`` is
    then bound to a writer for that framing: for chunked it frames each piece by hand (size line,
    payload, CRLF in one ``writelines``) instead of going through h11, which costs microseconds
    per chunk. h11 still sends the head and the final ``0`` chunk, so its state stays right.
    Writes after the client left are dropped (uvloop raises on writes to a closed transport).
    """

    __slots__ = (
        "_mode",
        "_proto",
        "_transport",
        "_writelines",
        "can_append",
        "chunked",
        "detached",
        "ended",
        "flow",
        "gone",
        "listener",
        "request",
        "started",
        "write",
        "write_pieces",
    )

    def __init__(self, proto: ServerProtocol, request: HttpRequest) -> None:
        self._proto = proto
        self._transport = proto.transport
        self._writelines = proto.transport.writelines
        self._mode = _NONE
        self.request = request
        self.flow = proto.flow
        self.listener: ExchangeListener | None = None
        self.started = self.ended = self.gone = False
        self.can_append = False  # body not length-framed: more bytes may follow (an error event)
        self.chunked = False  # the body goes out chunked: write_framed() may be used
        # Set by a callback-driven handler that returns before its response ends: its
        # callbacks own the exchange from then on (so no task is held per open stream).
        self.detached = False
        self.write: Callable[[bytes], None] = self._write_before_start
        self.write_pieces: Callable[[list[bytes]], None] = self._write_before_start

    def start(
        self, status: int, headers: Headers, *, length: int | None = None, reason: bytes = b""
    ) -> None:
        """Send the response head. ``headers`` must not carry framing headers."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        hdrs = list(headers)
        no_body = self.request.method == b"HEAD" or status in (204, 304) or status < 200
        if length is not None:
            hdrs.append((b"content-length", b"%d" % length))
            self._mode = _NONE if no_body else _H11
        elif no_body:
            self._mode = _NONE
        elif self.request.http_version == b"1.1":
            hdrs.append((b"transfer-encoding", b"chunked"))
            self._mode = _CHUNKED
        else:
            self._mode = _H11  # HTTP/1.0: h11 makes it close-delimited and adds Connection: close
        self.can_append = length is None and self._mode != _NONE
        self.chunked = self._mode == _CHUNKED
        reason = reason or _reason(status)
        head = self._proto.conn.send(h11.Response(status_code=status, headers=hdrs, reason=reason))
        if not self.gone:
            self._transport.write(head)
        if self._mode == _CHUNKED:
            self.write, self.write_pieces = self._write_chunk, self._write_chunks
        elif self._mode == _H11:
            self.write, self.write_pieces = self._write_h11, self._write_h11_pieces
        else:
            self.write, self.write_pieces = self._write_nothing, self._write_nothing

    def _write_chunk(self, data: bytes) -> None:
        if data and not self.gone:
            self._writelines(chunk(data))

    def _write_chunks(self, pieces: list[bytes]) -> None:
        # The hot path: every piece of one upstream read, each framed as its own chunk (so each
        # event is flushed as the upstream sent it), in one writelines: one writev syscall.
        # Payloads are not copied. An empty piece would end the body, so none is framed.
        if self.gone:
            return
        if len(pieces) == 1:
            self._write_chunk(pieces[0])
            return
        out: list[bytes] = []
        for data in pieces:
            if data:
                out += chunk(data)
        self._writelines(out)

    def write_framed(self, segments: list[bytes]) -> None:
        """The hot path when both hops are chunked: bytes that already carry chunk framing
        (validated by :class:`relay.framing.ChunkedPassthrough`), written as they are."""
        if self.gone:
            return
        if len(segments) == 1:
            self._transport.write(segments[0])
        else:
            self._writelines(segments)

    def _write_h11(self, data: bytes) -> None:
        if data and not self.gone:
            self._writelines(self._proto.conn.send_with_data_passthrough(h11.Data(data=data)) or ())

    def _write_h11_pieces(self, pieces: list[bytes]) -> None:
        for data in pieces:
            self._write_h11(data)

    def _write_nothing(self, data: object) -> None:
        pass

    def _write_before_start(self, data: object) -> None:
        raise RuntimeError("write() before start()")

    def end(self) -> None:
        """End the body cleanly (last chunk for chunked) and let the connection go on."""
        if self.ended:
            return
        self.ended = True
        if self.gone:
            return
        # h11 writes the terminating b"0\r\n\r\n" for chunked bodies, nothing otherwise.
        tail = self._proto.conn.send(h11.EndOfMessage())
        if tail:
            self._transport.write(tail)
        self._proto.exchange_done(self)
        self.release()

    def release(self) -> None:
        """Drop the references that make cycles (bound methods of this exchange, its listener),
        so a finished exchange is freed by reference counting, not by the cyclic GC (whose full
        collections pause the loop for 100+ ms when 10k streams' objects are alive)."""
        self.write = self.write_pieces = _drop
        self.listener = None

    def abort(self) -> None:
        """Cut the client connection without ending the body: the client sees a broken response,
        never a clean end (used when an upstream dies inside a body we cannot annotate)."""
        self.ended = True
        if not self.gone:
            self.gone = True
            self._proto.transport.abort()
        self.release()

    def respond(self, status: int, body: bytes, content_type: bytes = b"application/json",
                extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.start(status, [(b"content-type", content_type), *extra], length=len(body))
        self.write(body)
        self.end()

    def respond_error(self, status: int, message: str, type_: str, code: str | None,
                      extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.respond(status, error_body(message, type_, code), extra=extra)

    def peer(self) -> str:
        """The client's address as ``host:port`` (for the access log)."""
        addr = self._transport.get_extra_info("peername")
        if isinstance(addr, tuple) and len(addr) >= 2:
            return f"{addr[0]}:{addr[1]}"
        return str(addr or "")

    async def drain(self) -> None:
        """Wait while the client's write buffer is over its high-water mark."""
        if self.gone:
            raise ClientGone("client connection lost")
        await self.flow.drain()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class ServerProtocol(asyncio.Protocol):
    """One client connection: h11 parses, an :class:`Exchange` per request answers."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        timeouts: Timeouts,
        registry: set[ServerProtocol] | None = None,
    ) -> None:
        self._handler = handler
        self._registry = registry if registry is not None else set()
        self._limits = limits
        self._timeouts = timeouts
        self._loop = asyncio.get_running_loop()
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_size)
        self.flow = WriteFlow()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._request: HttpRequest | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._exchange: Exchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # keep-alive idle, head or body deadline
        self._send_timer: asyncio.TimerHandle | None = None  # armed while the client is paused
        # Set while a request head is awaited: our own count and checks run before h11 parses.
        self._reader: HeadReader | None = HeadReader(limits.max_head_size)
        self._head_started = False
        self._overloaded = False
        self._draining = False
        self._read_paused = False
        self._closed = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        self.transport = transport = cast(asyncio.Transport, transport)
        self._registry.add(self)
        # Over the cap, the connection is still accepted and its request read, so the client
        # gets a 503 it can act on (Retry-After) instead of a hang or a reset.
        self._overloaded = len(self._registry) > self._limits.max_connections
        tune_transport(transport, self._limits.write_high_water, self._limits.write_low_water,
                       nodelay=False)  # inherited from the listening socket (app.listen)
        self._head_started = True  # a new connection's head deadline runs from the accept
        self._arm(self._timeouts.request_head, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self._reader is not None and not self._read_head(data):
            return
        self._handle_events()

    def eof_received(self) -> bool:
        # Keep the write side open: a pipelining client may half-close after its last request
        # (buffered requests are read with reading paused, so this EOF comes after them). An
        # EOF while a response is in flight reaches _on_client_eof as ConnectionClosed.
        self.conn.receive_data(b"")
        self._handle_events()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self._closed = True
        self._disarm()
        if self._send_timer is not None:
            self._send_timer.cancel()
        self.flow.lost()
        self._client_gone()
        self._exchange = None  # no protocol <-> exchange cycle left behind

    def pause_writing(self) -> None:
        self.flow.pause()
        if self._send_timer is None:
            self._send_timer = self._loop.call_later(self._timeouts.send, self._send_timeout)
        ex = self._exchange
        if ex is not None and ex.listener is not None:
            ex.listener.client_paused()

    def resume_writing(self) -> None:
        self.flow.resume()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        ex = self._exchange
        if ex is not None and ex.listener is not None:
            ex.listener.client_resumed()

    def abort(self) -> None:
        """Close this connection now (server shutdown); an in-flight exchange sees its client go."""
        if not self._closed:
            self.transport.abort()

    def drain(self) -> None:
        """Graceful shutdown, step one: a connection with no response in flight closes now (a
        request still being read included); a busy one finishes its response, then closes
        instead of reading another request."""
        self._draining = True
        if self._exchange is None and not self._closed:
            self.transport.close()

    def stop(self) -> None:
        """Graceful shutdown, last step (the drain timeout passed): the in-flight response ends
        as cleanly as its body allows (an SSE error event and a clean end), then the close."""
        ex = self._exchange
        if ex is not None and ex.listener is not None and not ex.ended:
            ex.listener.shutdown()
        if self._closed:
            return
        if ex is None or ex.ended:
            self.transport.close()
        else:
            self.transport.abort()  # a body that cannot carry an error: cut, never a clean end

    def _send_timeout(self) -> None:
        """The client took nothing for ``Timeouts.send`` seconds: cut it. Its exchange sees the
        client go, so a relayed stream closes its upstream; memory held for it is freed."""
        self._send_timer = None
        if not self._closed:
            log.info("client made no progress reading for %g s; connection cut",
                     self._timeouts.send)
            self.transport.abort()

    # -- request side --------------------------------------------------------------------------

    def _read_head(self, data: bytes) -> bool:
        """Count and check the awaited request head; True once h11 may parse it."""
        reader = self._reader
        assert reader is not None
        if not self._head_started:  # first byte of a keep-alive request: the head deadline
            self._head_started = True
            self._arm(self._timeouts.request_head, self._head_timeout)
        verdict = reader.feed(data)
        if verdict == 0:
            return False
        if isinstance(verdict, int):
            head = self.conn.trailing_data[0][:verdict]  # h11 holds the head from its start
            rejection = check_head(head, self._limits)
            if rejection is None:
                self._reader = None
                return True
            verdict = rejection
        self._reject(verdict.status, verdict.message)
        return False

    def _handle_events(self) -> None:
        while not self._closed:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(exc.error_status_hint, str(exc) or "bad request")
                return
            if event is h11.NEED_DATA:
                if self._request is not None:  # inside a body: its silence deadline, re-armed
                    self._arm(self._timeouts.request_body, self._body_timeout)  # per read
                return
            if event is h11.PAUSED:
                # h11 pauses only once bytes of a next (pipelined) request are buffered; until
                # then the socket stays read, so a client that leaves mid-response is noticed
                # at once (EOF or reset), even while the upstream is silent.
                self._pause_reading()
                return
            if isinstance(event, h11.Request):
                if self._overloaded:
                    self._reject(503, "the relay is at its connection limit; retry shortly",
                                 [(b"retry-after", b"1")])
                    return
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._on_body(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._on_client_eof()
                return

    def _on_request(self, event: h11.Request) -> None:
        self._request = HttpRequest(
            method=event.method,
            target=event.target,
            headers=list(event.headers),
            http_version=event.http_version,
            body=b"",
        )
        self._body, self._body_size = [], 0
        # (A declared length over the limit was answered 413 by check_head already.)
        if self.conn.they_are_waiting_for_100_continue:
            # The relay always reads the body, so say so at once instead of making curl wait 1 s.
            continue_100 = h11.InformationalResponse(status_code=100, headers=[])
            self.transport.write(self.conn.send(continue_100) or b"")

    def _on_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self._limits.max_body_size:
            self._reject(413, "request body too large")
            return
        self._body.append(data)

    def _dispatch(self) -> None:
        request = self._request
        assert request is not None
        self._disarm()  # the request is in: no client-side deadline while it is answered
        request.body = b"".join(self._body)
        self._body = []
        self._request = None
        ex = self._exchange = Exchange(self, request)
        self._task = task = self._loop.create_task(self._run(ex))
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None  # a detached stream keeps no finished task alive

    async def _run(self, ex: Exchange) -> None:
        try:
            await self._handler(ex)
        except (ClientGone, asyncio.CancelledError):
            return
        except Exception:
            log.exception("handler failed for %s %s", ex.request.method, ex.request.path)
            if not ex.started:
                ex.respond_error(500, "internal error in the relay", "server_error", None)
        if not ex.ended and not ex.detached:
            if not ex.gone:  # (a handler may just return once its client has left)
                log.error("handler returned without ending its response; connection aborted")
            ex.abort()

    def _on_client_eof(self) -> None:
        ex = self._exchange
        if ex is None:
            self.transport.close()
        elif not ex.ended:
            # Like nginx: a client that closes while its response is in flight has gone away.
            self._client_gone()
            self.transport.close()

    def _client_gone(self) -> None:
        ex = self._exchange
        if ex is None or ex.ended or ex.gone:
            return
        ex.gone = True
        if ex.listener is not None:
            ex.listener.client_gone()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        ex.release()

    # -- response side -------------------------------------------------------------------------

    def exchange_done(self, ex: Exchange) -> None:
        """Called by ``Exchange.end()``: next keep-alive cycle, or close."""
        self._exchange = None
        conn = self.conn
        if self._draining:
            self.transport.close()
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._reader = HeadReader(self._limits.max_head_size)
            self._head_started = False
            self._arm(self._timeouts.keepalive, self._idle_timeout)
            if self._read_paused:  # h11 said PAUSED: the next request may be buffered already
                self._loop.call_soon(self._next_buffered)
        else:
            self.transport.close()

    def _next_buffered(self) -> None:
        """After a response: read again, after checking and parsing what h11 buffered (a
        pipelined request). Reading resumes only here, so no new bytes can arrive before the
        buffered ones are counted."""
        if self._closed:
            return
        self._read_paused = False
        self.transport.resume_reading()
        buffered = self.conn.trailing_data[0]
        if buffered and self._reader is not None and not self._read_head(buffered):
            return
        self._handle_events()

    def _reject(self, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
                ) -> None:
        """Answer a request we will not serve (bad framing, too large...) and close."""
        if self._closed:
            return
        self._disarm()
        body = error_body(message, "invalid_request_error", None)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            *extra,
        ]
        try:
            data = self.conn.send(h11.Response(status_code=status, headers=headers))
            data = (data or b"") + body
        except h11.LocalProtocolError:
            data = b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))
            data += b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body
        self._request = None
        self._closed = True
        self.transport.write(data)
        self.transport.close()

    def _pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    # -- client-side deadlines: one timer per connection, re-armed as the request advances ----

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timeout(self) -> None:
        """No byte of a next request within the keep-alive timeout: close quietly."""
        self._timer = None
        if self._exchange is None and not self._head_started:
            self.transport.close()

    def _head_timeout(self) -> None:
        """Slowloris: the head did not arrive whole in time."""
        self._timer = None
        if self._reader is not None and not self._closed:
            self._reject(408, "request head not received in time")

    def _body_timeout(self) -> None:
        self._timer = None
        if self._request is not None and not self._closed:
            self._reject(408, "request body not received in time")
