"""One request/response cycle: the handler's view of its client connection.

The client connection makes an :class:`Exchange` once a request is complete and hands it to the
handler. The handler answers through it: ``start()`` sends the response head and picks the
body's framing (:func:`relay.http1.writers.start_response`), the ``write*`` methods send body
bytes through that framing, and ``end()`` ends the body and gives the connection back for its
next request. Its life is one :class:`ExchangeState`::

    RECEIVED --start--> SENDING --end--> ENDED
        |                  |--abort--> ABORTED      (cut: the client sees a broken body)
        '------------------'--client left--> GONE   (writes are dropped from then on)

A handler that answers from callbacks instead of awaiting (the relay pump) registers an
:class:`ExchangeListener` with ``listen()``: from then on the callbacks own the exchange, the
handler's task may return before the response ends, and the listener hears about the client
(slow, fast again, gone) and about a server shutdown.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from ..errors import ClientGone, error_body
from ..http1.known_heads import ParsedHead
from ..http1.messages import Headers, Request
from ..http1.request_head import Rejection
from ..http1.writers import BodyWriter, NoBody, error_response, reason_phrase, start_response
from .flow import WriteFlow


class ExchangeState(enum.Enum):
    RECEIVED = "received"  # the request is in; nothing sent yet
    SENDING = "sending"  # the head went out; the body is open
    ENDED = "ended"  # the body ended cleanly; the connection went on to its next request
    ABORTED = "aborted"  # the connection was cut inside the response
    GONE = "gone"  # the client left before the response ended


log = logging.getLogger("relay.client")

RECEIVED, SENDING, ENDED = ExchangeState.RECEIVED, ExchangeState.SENDING, ExchangeState.ENDED
ABORTED, GONE = ExchangeState.ABORTED, ExchangeState.GONE
_NOT_STARTED: BodyWriter = NoBody()  # the writer until start() picks the real one


class ExchangeListener(Protocol):
    """What a callback-driven handler (the relay pump) hears about its client."""

    def on_client_paused(self) -> None: ...
    def on_client_resumed(self) -> None: ...
    def on_client_gone(self) -> None: ...
    def on_draining(self) -> None:
        """The server drains: a response that would never end on its own (a channel
        subscription) ends now; others finish."""

    def on_shutdown(self) -> None:
        """The server stops now: end the response as cleanly as the body allows."""


class ExchangeOwner(Protocol):
    """What an exchange needs of its client connection."""

    def exchange_ended(self, ex: Exchange) -> None: ...


class Exchange:
    """One request and its response (see the module docstring).

    Writes after the client left are dropped (uvloop raises on writes to a closed transport).
    Payloads are never copied: each ``write*`` is one ``writelines`` of the framed pieces.
    ``sent`` counts the body bytes ``write`` put on the wire (chunk framing included): the
    relay's own streams (channels, resumes) write through it, and their access-log lines read
    it; relayed bodies (``write_pieces``, ``write_framed``) are counted by their upstream
    connection as read, so that hot path adds nothing here.
    """

    __slots__ = ("_owner", "_transport", "_writelines", "_writer", "extra", "flow", "listener",
                 "request", "sent", "state")

    def __init__(self, owner: ExchangeOwner, request: Request, transport: asyncio.Transport,
                 flow: WriteFlow) -> None:
        self._owner = owner
        self._transport = transport
        self._writelines = transport.writelines
        self._writer = _NOT_STARTED
        self.request = request
        self.flow = flow
        self.listener: ExchangeListener | None = None
        self.state = RECEIVED
        self.extra: Headers = []  # added to whatever response head goes out (CORS headers)
        self.sent = 0  # body bytes written by write(), framing included

    @property
    def started(self) -> bool:
        """The response head was sent (or would have been, had the client stayed)."""
        return self._writer is not _NOT_STARTED

    @property
    def open(self) -> bool:
        """Body bytes can still be sent."""
        return self.state is SENDING

    @property
    def appendable(self) -> bool:
        """The body has no declared length: bytes of the relay's own (an error event) may
        follow what the upstream sent."""
        return self._writer.appendable

    @property
    def chunked(self) -> bool:
        """The body goes out chunked: already-framed chunks may go through ``write_framed``."""
        return self._writer.chunked

    def listen(self, listener: ExchangeListener) -> None:
        """Callbacks drive this exchange from now on (see the module docstring)."""
        self.listener = listener

    def start(self, status: int, headers: Headers, *, length: int | None = None,
              reason: bytes = b"", body: bytes = b"") -> None:
        """Send the response head (and ``body``'s first bytes in the same write: a small
        response is one system call and one packet). ``headers`` must not carry framing
        headers."""
        head = self._head(status, headers, length, reason)
        if self.state is RECEIVED:
            self.state = SENDING
            if body:
                self._writelines([head, *self._writer.frame([body])])
            else:
                self._transport.write(head)

    def _head(self, status: int, headers: Headers, length: int | None, reason: bytes = b""
              ) -> bytes:
        """The response head's bytes (with ``extra``); its body's writer is picked."""
        if self._writer is not _NOT_STARTED:
            raise RuntimeError("response already started")
        req = self.request
        if self.extra:
            headers = [*headers, *self.extra]
        head, self._writer = start_response(req.method, req.http_version, status,
                                            reason or reason_phrase(status), headers, length,
                                            req.keep_alive)
        return head

    def write(self, data: bytes) -> None:
        """Send one piece of the body (an empty one is ignored)."""
        if self.state is SENDING:
            if data:
                pieces = self._writer.frame([data])
                self._writelines(pieces)
                self.sent += sum(map(len, pieces))
        elif self.state is RECEIVED:
            raise RuntimeError("write() before start()")

    def write_pieces(self, pieces: list[bytes]) -> None:
        """The hot path for payload: every piece of one upstream read (none empty), each framed
        as the body needs (a chunk each when chunked), in one ``writelines``: one ``writev``."""
        if self.state is SENDING:
            self._writelines(self._writer.frame(pieces))
        elif self.state is RECEIVED:
            raise RuntimeError("write() before start()")

    def write_framed(self, segments: list[bytes]) -> None:
        """The hot path when both hops are chunked: bytes that already carry chunk framing
        (validated by :class:`relay.http1.passthrough.ChunkedPassthrough`), as they are."""
        if self.state is SENDING:
            if len(segments) == 1:
                self._transport.write(segments[0])
            else:
                self._writelines(segments)

    def end(self) -> None:
        """End the body cleanly (the last chunk when chunked) and let the connection go on."""
        if self.state is not SENDING:
            if self.state is RECEIVED:
                raise RuntimeError("end() before start()")
            return
        tail = self._writer.end()
        if tail:
            self._transport.write(tail)
            self.sent += len(tail)
        self._ended()

    def _ended(self) -> None:
        self.state = ENDED
        self._unlink()
        self._owner.exchange_ended(self)

    def abort(self) -> None:
        """Cut the client connection without ending the body: the client sees a broken
        response, never a clean end (used when an upstream dies inside a body we cannot
        annotate)."""
        if self.state is RECEIVED or self.state is SENDING:
            self.state = ABORTED
            self._transport.abort()
        self._unlink()

    def client_gone(self) -> bool:
        """Called by the connection when the client leaves: the listener hears of it, and
        writes are dropped from now on. False when the exchange had already finished."""
        if self.state is not RECEIVED and self.state is not SENDING:
            return False
        self.state = GONE
        listener = self.listener
        self._unlink()
        if listener is not None:
            listener.on_client_gone()
        return True

    def _unlink(self) -> None:
        """Drop the reference that makes a cycle (exchange <-> listener), so a finished
        exchange is freed by reference counting, not by the cyclic GC (whose full collections
        pause the loop for 100+ ms when 10k streams' objects are alive)."""
        self.listener = None

    def respond(self, status: int, body: bytes, content_type: bytes = b"application/json",
                extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """A whole response with a ``Content-Length`` body: ``start`` and ``end`` in one, head
        and body in one ``writelines`` (its length is known, so nothing is framed or counted)."""
        head = self._head(status, [(b"content-type", content_type), *extra], len(body))
        if self.state is RECEIVED:
            if body and not isinstance(self._writer, NoBody):
                self._writelines([head, body])
            else:
                self._transport.write(head)
            self._ended()

    def respond_error(self, status: int, message: str, type_: str, code: str | None,
                      extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """An OpenAI-style JSON error response."""
        self.respond(status, error_body(message, type_, code), extra=extra)

    def transport_write(self) -> Callable[[bytes], None]:
        """The transport's own ``write``, for fan-out of already-framed chunks (the hub checks
        the exchange is open before each use)."""
        return self._transport.write

    def buffered(self) -> int:
        """Bytes waiting in the client's write buffer."""
        return self._transport.get_write_buffer_size()

    def peer(self) -> str:
        """The client's address as ``host:port`` (for the access log)."""
        return peer_of(self._transport)

    async def wait_writable(self) -> None:
        """Wait while the client's write buffer is over its high-water mark (for coroutine
        producers); raises :class:`ClientGone` once the client has left."""
        if self.state is GONE or self.state is ABORTED:
            raise ClientGone("client connection lost")
        await self.flow.wait_writable()


def peer_of(transport: asyncio.BaseTransport) -> str:
    """A connection's peer address as ``host:port``."""
    addr = transport.get_extra_info("peername")
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr or "")


class DirectAnswers(Protocol):
    """A handler that can also answer some whole requests in bytes, with no exchange.

    The client connection offers it a request whose head it knows (parsed before, byte for
    byte) and whose whole body came in the same read, with nothing after it; ``direct``
    returns the complete response (head and ``Content-Length`` body, keep-alive), or None to
    have it answered the usual way (through an :class:`Exchange`). A publisher posting to a
    channel is the case: its request and answer then cost no request, exchange or body
    object, and no routing beyond the first. The answer must be the bytes the usual way
    would have sent (a test compares them)."""

    def direct(self, head: ParsedHead, body: bytes, peer: Callable[[], str]) -> bytes | None:
        ...


class Refusals(Protocol):
    """A handler that records the requests its client connection refuses before routing.

    Bad framing or smuggling (400), a body too slow (408) or too large (413), a head too large
    (414, 431), no room in ``--max-connections`` or ``--max-body-memory`` (503): the connection
    answers these itself, so no handler sees them. :func:`refuse` tells ``refused`` first, with
    the request when its head was parsed (else None), so each gets its access-log line."""

    def refused(self, request: Request | None, rejection: Rejection,
                peer: Callable[[], str]) -> None: ...


LINGER = 2.0  # seconds a refused connection's input is still read (and dropped) before close


def refuse(transport: asyncio.Transport, rejection: Rejection, request: Request | None,
           refusals: Refusals | None, peer: Callable[[], str]) -> None:
    """Answer a refused request (an OpenAI-style error body, ``Connection: close``), close,
    and have it recorded (:class:`Refusals`).

    The close lingers, as nginx's does: the answer is followed by a FIN (``write_eof``), and
    what the client still sends (the rest of a body too large) is read and dropped for up to
    ``LINGER`` seconds or until its own FIN. Closed at once, a socket with unread input sends
    a reset, and a reset makes the client's kernel drop the answer it had not read yet: the
    client would see "connection reset" instead of its 413 or 503."""
    if refusals is not None:
        refusals.refused(request, rejection, peer)
    transport.write(error_response(rejection))
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    transport.resume_reading()  # (the caller drops what comes: see ClientConnection)
    asyncio.get_running_loop().call_later(LINGER, transport.close)


Handler = Callable[["Exchange"], Awaitable[None] | None]
"""Answers one exchange. It returns None when it answered at once (or handed the exchange to a
listener); otherwise the awaitable that finishes the answer, run in a Task of its own."""


def answer(handler: Handler, ex: Exchange) -> Coroutine[Any, Any, None] | None:
    """Run ``handler`` on ``ex`` now; the coroutine for a Task if it has more to wait for.

    Most answers need nothing to wait for (a publish to a channel, ``/healthz``, a refusal): a
    Task for them would cost an object, a scheduled step and one more turn of the loop before
    the first line runs. So a handler does what it can at once and returns an awaitable only
    for what must wait (an upstream, Redis). Either way: a handler that raises gets its client
    a 500 (if nothing was sent yet); one that finishes without ending its response, and without
    handing it to a listener, gets the connection cut, never a clean end."""
    try:
        pending = handler(ex)
    except ClientGone:
        return None
    except Exception:
        _failed(ex)
        pending = None
    if pending is None:
        _check_ended(ex)
        return None
    return _finish(pending, ex)


async def _finish(pending: Awaitable[None], ex: Exchange) -> None:
    try:
        await pending
    except (ClientGone, asyncio.CancelledError):
        return
    except Exception:
        _failed(ex)
    _check_ended(ex)


def cancel_answer(task: asyncio.Task[None]) -> None:
    """Stop the Task of an answer whose client left. One that has not taken its first step yet
    is cancelled right after that step (already queued, so it comes first): the coroutines the
    handler made in :func:`answer` then start, and get the cancel where they wait, instead of
    being dropped never awaited."""
    coro = task.get_coro()
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        task.get_loop().call_soon(task.cancel)
    else:
        task.cancel()


def _failed(ex: Exchange) -> None:
    req = ex.request
    log.exception("handler failed for %s %s", req.method.decode("latin-1"),
                  req.path.decode("latin-1"))
    if not ex.started:
        ex.respond_error(500, "internal error in the relay", "server_error", None)


def _check_ended(ex: Exchange) -> None:
    if (ex.state is RECEIVED or ex.state is SENDING) and ex.listener is None:
        log.error("handler returned without ending its response; connection aborted")
        ex.abort()
