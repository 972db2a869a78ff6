"""The client side: an ``asyncio.Protocol`` per client connection, one state at a time.

The bytes of each read go into a sans-IO :class:`~relay.http1.request_reader.RequestReader`;
the connection acts on its events (:meth:`ClientConnection._act`): a whole ``Request`` goes
to the handler in an :class:`~relay.net.exchange.Exchange`, at once
(:func:`~relay.net.exchange.answer`: a Task only for a handler that has to wait); a ``Reject``
is answered, then the close; ``CONTINUE`` writes ``100 Continue``; ``PAUSED`` (a pipelined
request is buffered) stops reading the socket until the answer ended. Responses go out
through the exchange, serialized by our own code (:mod:`relay.http1.writers`).

Its life is one :class:`State`, changed only by :meth:`ClientConnection._enter`, which also
arms that state's deadline from :data:`_DEADLINES` (one :class:`~relay.net.deadlines.Timer`;
a second one runs while the client takes nothing, the send timeout)::

    READING_HEAD (from the accept) --head--> READING_BODY --body--> ANSWERING --end--> AWAIT_HEAD
    AWAIT_HEAD --first byte--> READING_HEAD        ANSWERING --end, answers unread--> DRAINING
    DRAINING --the client read them--> AWAIT_HEAD  a request that said close --> CLOSING
    any --refused--> REFUSED (its close lingers)   any --lost--> CLOSED

The next request, pipelined or not, is taken only once the previous response has drained
below the write buffer's low-water mark (as nginx and Envoy do): a client that sends requests
and never reads the answers costs one write buffer, not one answer per request.

The fast path: a ``Request`` the reader marks ``direct`` may be answered in bytes by the
handler's ``direct`` (:class:`~relay.net.exchange.DirectAnswers`), with no exchange
(:meth:`ClientConnection._answer_directly`); then on as after any answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol, cast

from ..config import Limits, Timeouts
from ..http1.known_heads import KnownHeads
from ..http1.request_head import Rejection
from ..http1.request_reader import Part, Reject, Request, RequestReader, Signal
from .budget import OVER_BUDGET, BodyBudget, Hold
from .deadlines import Timer
from .exchange import ENDED, RECEIVED, Exchange, Handler, answer, cancel_answer, peer_of, refuse
from .flow import WriteFlow
from .sockets import tune_transport

if TYPE_CHECKING:
    from .exchange import DirectAnswers, Refusals

log = logging.getLogger("relay.client")
NEED_DATA, PAUSED, CONTINUE, EOF = Signal.NEED_DATA, Signal.PAUSED, Signal.CONTINUE, Signal.CLOSED
HEAD, BODY, CHUNKED = Part.HEAD, Part.BODY, Part.CHUNKED  # (the reader's events and parts)
_OVERLOADED = Rejection(503, "the relay is at its connection limit; retry shortly",
                        ((b"retry-after", b"1"),))


class State(enum.IntEnum):
    """Where a client connection is (see the module docstring)."""

    AWAIT_HEAD = 0  # between requests: no byte of the next one yet (keep-alive idle)
    READING_HEAD = 1  # a head is arriving: from the accept, or from its first byte
    READING_BODY = 2  # a body is arriving
    ANSWERING = 3  # the handler answers; a pipelined request waits in the reader
    DRAINING = 4  # answered, but the client has not read the answers: no request is taken
    CLOSING = 5  # the last answer (a request that said close, or a shutdown); input dropped
    REFUSED = 6  # a refusal was answered; its close lingers; input dropped
    CLOSED = 7  # the connection is lost


AWAIT_HEAD, READING_HEAD, READING_BODY, ANSWERING = (State.AWAIT_HEAD, State.READING_HEAD,
                                                     State.READING_BODY, State.ANSWERING)
DRAINING, CLOSING, REFUSED, CLOSED = State.DRAINING, State.CLOSING, State.REFUSED, State.CLOSED

# Each state's deadline, indexed by the state: its length, or None for none.
_DEADLINES: tuple[Callable[[Timeouts], float] | None, ...] = (
    attrgetter("keepalive"),  # AWAIT_HEAD: idle
    attrgetter("request_head"),  # READING_HEAD
    attrgetter("request_body"),  # READING_BODY (or less: the body's total deadline)
    None,  # ANSWERING
    attrgetter("keepalive"),  # DRAINING: idle
    None, None, None,  # CLOSING, REFUSED, CLOSED
)


class Registry(Protocol):
    """Where a listener keeps its open connections (relay.net.listener.Connections)."""

    def add(self, conn: ClientConnection) -> None: ...
    def discard(self, conn: ClientConnection) -> None: ...
    def __len__(self) -> int: ...


class ClientConnection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, handler: Handler, limits: Limits, timeouts: Timeouts, registry: Registry,
                 loop: asyncio.AbstractEventLoop | None = None,
                 budget: BodyBudget | None = None, known: KnownHeads | None = None) -> None:
        self._handler = handler
        self._direct = cast("DirectAnswers", handler).direct if hasattr(handler, "direct") else None
        self._refusals = cast("Refusals", handler) if hasattr(handler, "refused") else None
        self._reader = RequestReader(limits, KnownHeads(limits.known_heads)
                                     if known is None else known)
        self._registry, self._limits, self._timeouts = registry, limits, timeouts
        self._loop = loop or asyncio.get_running_loop()  # a fake one in tests: exact timers
        self.flow = WriteFlow()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._hold = Hold(budget or BodyBudget(limits.max_body_memory))  # (shared: listen())
        self._exchange: Exchange | None = None
        self._task: asyncio.Task[None] | None = None  # (an answer that has to wait)
        self._timer = Timer(self._loop)  # the state's deadline (_DEADLINES)
        self._send_timer = Timer(self._loop)  # armed while the client takes nothing
        self._body_deadline = 0.0  # when the body being read must be whole
        self._delays = [None if length is None else length(timeouts) for length in _DEADLINES]
        self._read_paused = False
        self.state = READING_HEAD  # (changed only by _enter)

    def _enter(self, state: State) -> None:
        """The one place the state changes: its deadline armed (_DEADLINES), or none."""
        self.state = state
        delay = self._delays[state]
        if delay is None:
            self._timer.cancel()
            return
        if state is READING_BODY:
            delay = min(delay, self._body_deadline - self._loop.time())
        self._timer.arm(delay, self._deadline_passed)

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # (uvloop's: no subclass)
        self._registry.add(self)
        # Over the cap, the connection is still accepted and its request read, so the client
        # gets a 503 it can act on (Retry-After) instead of a hang or a reset.
        if len(self._registry) > self._limits.max_connections:
            self._reader.refusal = _OVERLOADED
        tune_transport(transport, self._limits.write_high_water, self._limits.write_low_water,
                       nodelay=False)  # inherited from the listening socket (net/listener.py)
        self._enter(READING_HEAD)  # a new connection's head deadline runs from the accept

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state >= CLOSING:
            return  # after a request that closes the connection, bytes are never parsed
        self._reader.feed(data)
        if state is not DRAINING:  # (no request is taken until the answers are read)
            self._act()

    def eof_received(self) -> bool:
        # Keep the write side open: a pipelining client may half-close after its last request
        # (answered first). An EOF while a response is in flight means the client left.
        if self.state >= CLOSING:
            self._on_client_eof()
        else:
            self._reader.feed_eof()
            if self.state is not DRAINING:
                self._act()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self._enter(CLOSED)
        self._timer.stop()
        self._send_timer.stop()
        self._hold.release()
        self.flow.lost()
        self._client_gone()
        self._exchange = None  # no connection <-> exchange cycle left behind

    def pause_writing(self) -> None:
        self.flow.pause()
        if not self._send_timer.armed:
            self._send_timer.arm(self._timeouts.send, self._send_timeout)
        ex = self._exchange
        if ex is not None and ex.listener is not None:
            ex.listener.on_client_paused()

    def resume_writing(self) -> None:
        self.flow.resume()
        self._send_timer.cancel()
        ex = self._exchange
        if ex is not None and ex.listener is not None:
            ex.listener.on_client_resumed()
        if self.state is DRAINING:  # the client took our answers: the next request may come
            self._enter(AWAIT_HEAD)
            self._loop.call_soon(self._next_buffered)

    # -- the reader's events -------------------------------------------------------------------

    def _act(self) -> None:
        """Take the reader's events until it needs more bytes (or the connection reads no
        more): each request's body bytes are held in the budget as they come."""
        reader, hold = self._reader, self._hold
        while True:
            event = reader.next_event()
            if reader.received > hold.held and not hold.take(reader.received - hold.held):
                self._refuse(OVER_BUDGET)
                return
            if event is not CONTINUE:
                break
            # The relay always reads the body: say so at once, not after curl's 1 s wait.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if isinstance(event, Request):
            if event.direct and self._direct is not None and self._answer_directly(event):
                return  # (the fast path: answered in bytes, no exchange)
            self._dispatch(event)  # (what follows is read once its answer ended)
            if self.state is ANSWERING and reader.pending:  # (as h11's PAUSED)
                self._pause_reading()  # a next request, or the EOF, waits behind it
        elif event is NEED_DATA:
            self._need_data(reader.part)
        elif event is PAUSED:
            # Only once bytes of a next (pipelined) request are buffered; until then the
            # socket stays read, so a client that leaves mid-response is noticed at once.
            self._pause_reading()
        elif isinstance(event, Reject):
            self._refuse(event.rejection)
        else:
            assert event is EOF, event
            self._on_client_eof()

    def _need_data(self, part: Part) -> None:
        """A head's deadline from its first byte; a body's re-armed per read (_enter)."""
        state = self.state
        if part is HEAD:
            if state is AWAIT_HEAD:
                self._enter(READING_HEAD)
        elif part is BODY or part is CHUNKED:
            if state is not READING_BODY:
                now = self._loop.time()
                self._body_deadline = now + (self._timeouts.request_body_deadline or math.inf)
            self._enter(READING_BODY)

    def _dispatch(self, event: Request) -> None:
        """A whole request, to the handler through an exchange."""
        head = event.head
        request = head.request()
        request.body = event.body
        # A request that said "close": answer it, then close; what follows is never read.
        self._enter(ANSWERING if head.keep_alive else CLOSING)
        ex = self._exchange = Exchange(self, request, self.transport, self.flow)
        self._task = None  # (a previous answer's task is not this one's to cancel)
        pending = answer(self._handler, ex)  # (most answers are whole when this returns)
        if pending is not None:
            self._task = task = self._loop.create_task(pending)
            task.add_done_callback(self._task_done)
        if self._exchange is ex:  # a longer answer: its loop timer goes (10k streams, 10k timers)
            self._timer.stop()

    def _answer_directly(self, event: Request) -> bool:
        """The handler's ``direct`` answer, in bytes, for a request the reader marked
        ``direct``, on a connection free to take it; True when it answered."""
        head = event.head
        if not head.keep_alive or self.flow.paused:
            return False
        try:
            response = self._direct(head, event.body, self._peer)  # type: ignore[misc]
        except Exception:  # (a bug in the direct answer itself: the usual way answers)
            log.exception("direct answer failed")
            return False
        if response is None:
            return False
        self.transport.write(response)
        self._hold.release()
        self._next_request()
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:  # (a callback-driven stream keeps no finished task alive)
            self._task = None

    def _on_client_eof(self) -> None:
        ex = self._exchange
        if ex is None:
            self.transport.close()
        elif ex.state is RECEIVED or ex.open:
            # Like nginx: a client that closes while its response is in flight has gone away.
            self._client_gone()
            self.transport.close()

    def _client_gone(self) -> None:
        ex = self._exchange
        if ex is not None and ex.client_gone() and self._task is not None:
            cancel_answer(self._task)

    # -- between requests ----------------------------------------------------------------------

    def exchange_ended(self, ex: Exchange) -> None:
        """Called by ``Exchange.end()``: the next keep-alive cycle, or the close."""
        self._exchange = None
        self._hold.release()
        if self.state is not ANSWERING:  # (CLOSING: it said close, or the server drains)
            self.transport.close()
            return
        self._next_request()

    def _next_request(self) -> None:
        """After any answer: the next request is read once the client took our answers."""
        pending = self._reader.next_cycle()
        if self.flow.paused:  # our answers are not read yet: take no request until they are
            self._pause_reading()
            self._enter(DRAINING)
            return
        self._enter(AWAIT_HEAD)
        if pending:  # a next request: read on a next turn, nothing new before it
            self._pause_reading()
            self._loop.call_soon(self._next_buffered)
        elif self._read_paused:
            self._loop.call_soon(self._next_buffered)

    def _next_buffered(self) -> None:
        """After a response: read what the reader buffered (a pipelined request), and the
        socket again."""
        if self.state is not AWAIT_HEAD:  # (a shutdown closed it meanwhile: answer no more)
            return
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        self._act()

    def _refuse(self, rejection: Rejection) -> None:
        """Answer a request we will not serve (bad framing, too large...) and close."""
        if self.state >= REFUSED:
            return
        reader = self._reader
        head = reader.head
        reader.stop()  # (the close lingers: hold nothing)
        self._enter(REFUSED)
        self._hold.release()
        refuse(self.transport, rejection, head.request() if head is not None else None,
               self._refusals, self._peer)

    def _pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def _peer(self) -> str:
        return peer_of(self.transport)

    # -- deadlines -----------------------------------------------------------------------------

    def _deadline_passed(self) -> None:
        """The state's deadline (_DEADLINES): idle, close quietly; a head or a body not in
        time (slowloris), 408."""
        state = self.state
        if state is AWAIT_HEAD or state is DRAINING:
            self.transport.close()
        elif state is READING_HEAD:
            self._refuse(Rejection(408, "request head not received in time"))
        elif self._loop.time() >= self._body_deadline:  # READING_BODY
            self._refuse(Rejection(408, "request body not received whole within "
                                   f"{self._timeouts.request_body_deadline:g} s"))
        else:
            self._refuse(Rejection(408, "request body not received in time"))

    def _send_timeout(self) -> None:
        """The client took nothing for ``Timeouts.send`` seconds: cut it. Its exchange sees the
        client go, so a relayed stream closes its upstream; memory held for it is freed."""
        if self.state < REFUSED:
            log.info("client made no progress reading for %g s; connection cut",
                     self._timeouts.send)
            self.transport.abort()

    # -- a graceful shutdown, as relay.net.listener.Listener takes its steps ---------------

    def abort(self) -> None:
        """Close this connection now; an in-flight exchange sees its client go."""
        if self.state < REFUSED:
            self.transport.abort()

    def close_when_idle(self) -> None:
        """Step one: a connection with no response in flight closes now (a request still
        being read included); a busy one finishes its response, then closes instead of
        reading another request."""
        ex = self._exchange
        if ex is None:
            if self.state < CLOSING:
                self._enter(CLOSING)
                self.transport.close()
        else:
            self._enter(CLOSING)
            if ex.listener is not None:
                ex.listener.on_draining()

    def stop_now(self) -> None:
        """Last step (the grace period passed): the in-flight response ends as cleanly as its
        body allows (an SSE error event and a clean end), then the close."""
        ex = self._exchange
        if ex is not None and ex.listener is not None and (ex.state is RECEIVED or ex.open):
            ex.listener.on_shutdown()
        if self.state >= REFUSED:
            return
        if ex is None or ex.state is ENDED:
            self.transport.close()
        else:
            self.transport.abort()  # a body that cannot carry an error: cut, never a clean end
