"""The client side: an ``asyncio.Protocol`` per client connection, h11 parsing its requests.

Bytes from the socket go into an h11 server ``Connection`` (``receive_data``), which turns a
head into a ``Request`` event (``next_event``); a chunked body follows as ``Data`` events, a
``Content-Length`` one is counted by :class:`~relay.http1.request_body.AfterHead` instead.
Before h11 sees a head, :class:`relay.http1.request_head.HeadReader` counts it and
:func:`~relay.http1.request_head.check_head` judges it on the raw bytes. When a request is
complete, the connection hands an :class:`~relay.net.exchange.Exchange` to the handler, at
once (:func:`~relay.net.exchange.answer`: a Task only for a handler that has to wait); the
handler's response goes out through the exchange, serialized by our own code
(:mod:`relay.http1.writers`), so h11 here only *parses*. When the response ends, a fresh h11
connection takes over the bytes already buffered, for the next keep-alive request.

Pipelining: if the client sends its next request before our response ended, h11 returns
``PAUSED`` instead of parsing it. We stop reading the socket (so a pipelining client cannot make
us buffer without limit) and pick up the buffered bytes after the current response. Until then
the socket stays read, so a client that leaves mid-response is noticed at once.

The next request, pipelined or not, is taken only once the previous response has drained
below the write buffer's low-water mark (as nginx and Envoy do): a client that sends requests
and never reads the answers costs one write buffer, not one answer per request.

Deadlines, one :class:`~relay.net.deadlines.Timer` re-armed as the request advances: keep-alive
idle, then the head from its first byte (slowloris: 408), then the body's silence between reads
or its total time, whichever comes first (408). A second timer runs while the client takes
nothing (the send timeout).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import h11

from ..config import Limits, Timeouts
from ..http1.known_heads import KnownHeads, ParsedHead
from ..http1.messages import Request
from ..http1.request_body import AfterHead, RequestBody, start_body
from ..http1.request_head import HeadReader, Rejection, check_head, parse_error
from .budget import OVER_BUDGET, BodyBudget, Hold
from .deadline_steps import DeadlineSteps
from .deadlines import Timer
from .direct_steps import DirectSteps
from .exchange import RECEIVED, Exchange, Handler, answer, cancel_answer, refuse
from .flow import WriteFlow
from .shutdown import ShutdownSteps
from .sockets import tune_transport

if TYPE_CHECKING:
    from .exchange import DirectAnswers, Refusals
    from .listener import Registry

_RETRY = ((b"retry-after", b"1"),)
_OVERLOADED = Rejection(503, "the relay is at its connection limit; retry shortly", _RETRY)


class ClientConnection(ShutdownSteps, DeadlineSteps, DirectSteps, asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, handler: Handler, limits: Limits, timeouts: Timeouts, registry: Registry,
                 loop: asyncio.AbstractEventLoop | None = None,
                 budget: BodyBudget | None = None, known: KnownHeads | None = None) -> None:
        self._handler = handler
        self._direct = cast("DirectAnswers", handler).direct if hasattr(handler, "direct") else None
        self._refusals = cast("Refusals", handler) if hasattr(handler, "refused") else None
        self._known = KnownHeads(limits.known_heads) if known is None else known
        self._registry, self._limits, self._timeouts = registry, limits, timeouts
        self._loop = loop or asyncio.get_running_loop()  # a fake one in tests: exact timers
        self._h11, self._h11_unused = self._new_h11(), True  # (unused: a head may skip it)
        self.flow = WriteFlow()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._request: Request | None = None  # a request whose body is being read
        self._body: RequestBody | None = None
        self._hold = Hold(budget or BodyBudget(limits.max_body_memory))  # (shared: listen())
        self._exchange: Exchange | None = None
        self._task: asyncio.Task[None] | None = None  # (an answer that has to wait)
        self._timer = Timer(self._loop)  # keep-alive idle, head or body deadline
        self._send_timer = Timer(self._loop)  # armed while the client takes nothing
        self._head: HeadReader | None = HeadReader(limits.max_head_size)  # (awaiting a head)
        self._head_started = False
        self._head_bytes = b""  # (the head h11 is given, kept with what it says once parsed)
        self._after: AfterHead | None = None  # after a head h11 parsed, when it reads no more
        self._overloaded = False
        self._closing = False  # graceful shutdown: close after the response in flight
        self._read_paused = self._closed = False
        self._wait_drain = False  # the next request waits until the client takes our answers
        self._discarding = False  # after a request that said "close": read nothing more

    def _new_h11(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head_size)

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # (uvloop's: no subclass)
        self._registry.add(self)
        # Over the cap, the connection is still accepted and its request read, so the client
        # gets a 503 it can act on (Retry-After) instead of a hang or a reset.
        self._overloaded = len(self._registry) > self._limits.max_connections
        tune_transport(transport, self._limits.write_high_water, self._limits.write_low_water,
                       nodelay=False)  # inherited from the listening socket (net/listener.py)
        self._head_started = True  # a new connection's head deadline runs from the accept
        self._timer.arm(self._timeouts.request_head, self._request_timeout)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return  # bytes after a request that closes the connection are never parsed
        if self._after is not None:  # h11 parsed the head: the body and what follows are ours
            self._take(data)
            return
        body = self._body
        if body is not None and body.check is not None:  # a chunked body: our own checks
            rejection = body.check.feed(data)
            if rejection is not None:
                self._reject(rejection)
                return
        if self._head is not None and self._h11_unused:  # the usual start of a head
            if not self._read_head(data, True):
                return
        else:
            self._h11.receive_data(data)
            self._h11_unused = False
            if self._head is not None and not self._read_head(data, False):
                return
        self._handle_events()

    def eof_received(self) -> bool:
        # Keep the write side open: a pipelining client may half-close after its last request
        # (answered first). An EOF while a response is in flight means the client left.
        if self._discarding:
            self._on_client_eof()
            return True
        if self._after is not None:
            self._after.eof = True  # (for the next cycle, behind the buffered requests)
            if self._request is not None:
                self._take(b"")  # inside the body: a 400, as h11 would say
            elif not self._after.kept:
                self._on_client_eof()
            return True
        self._h11.receive_data(b"")
        self._h11_unused = False
        self._handle_events()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self._closed = True
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
        if self._wait_drain:  # the client took our answers: the next request may come
            self._wait_drain = False
            self._loop.call_soon(self._next_buffered)

    # -- request side --------------------------------------------------------------------------

    def _read_head(self, data: bytes, alone: bool) -> bool:
        """Count and check the awaited request head; True once h11 may parse it. ``alone``:
        the head starts in ``data`` and h11 holds nothing yet (it is given the bytes only if
        it has to parse them: a head parsed before, byte for byte, never reaches it)."""
        reader = self._head
        assert reader is not None
        verdict = reader.feed(data)
        if not self._head_started:  # first byte of a keep-alive request: the head deadline
            self._head_started = True
            if verdict == 0:  # (a head whole in its first read needs none)
                self._timer.arm(self._timeouts.request_head, self._request_timeout)
        if isinstance(verdict, Rejection):
            return self._reject(verdict)
        if verdict:
            buffered, eof = (data, False) if alone else self._h11.trailing_data
            head = buffered[:verdict]  # (h11 holds the head from its start)
            known = self._known.get(head)
            if known is not None and alone and self._answer_directly(known, data, verdict):
                return False  # (its reader saw only this head: it awaits the next one as is)
            self._head = None
            if known is not None:  # parsed before, byte for byte: h11 would say the same
                self._start_request(known, buffered[verdict:], eof)
                return False
            rejection = check_head(head, self._limits)
            if rejection is not None:
                return self._reject(rejection)
            self._head_bytes = head
        if alone:  # (a part of a head, or one h11 has to parse)
            self._h11.receive_data(data)
            self._h11_unused = False
        return verdict != 0

    def _handle_events(self) -> None:
        while not self._closed:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(parse_error(exc.error_status_hint, str(exc)))
                return
            if not self._on_event(event):
                return

    def _on_event(self, event: object) -> bool:
        """Take one h11 event; False when nothing more can be taken now."""
        if event is h11.NEED_DATA:
            if self._request is not None:  # inside a body: its deadlines, re-armed per read
                self._body_timer()
            return False
        if event is h11.PAUSED:
            # h11 pauses only once bytes of a next (pipelined) request are buffered; until
            # then the socket stays read, so a client that leaves mid-response is noticed.
            self._pause_reading()
            return False
        if isinstance(event, h11.Request):
            return self._on_request(event)
        if isinstance(event, h11.Data):
            self._on_body(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return self._body is not None and self._dispatch(self._body.join())
        elif isinstance(event, h11.ConnectionClosed):
            self._on_client_eof()
            return False
        return True

    def _on_request(self, event: h11.Request) -> bool:
        """A request head from h11: checked, normalized, then kept for its next occurrence."""
        parsed = ParsedHead.of(event.method, event.target, event.headers, event.http_version,
                               self._h11.they_are_waiting_for_100_continue)
        if isinstance(parsed, Rejection):  # (a refusal is never kept: it is decided each time)
            return self._reject(_OVERLOADED if self._overloaded else parsed)
        self._known.add(self._head_bytes, parsed)
        return self._start_request(parsed, *self._h11.trailing_data)

    def _start_request(self, head: ParsedHead, after_head: bytes, eof: bool) -> bool:
        """A request head: its body's framing checked, its bytes counted as they arrive."""
        self._request = head.request()  # (also what a refusal of it is logged with)
        if self._overloaded:
            return self._reject(_OVERLOADED)
        body = start_body(head.chunked, self._limits.max_body_size, after_head, head.length)
        if isinstance(body, Rejection):
            return self._reject(body)
        self._body = body
        if head.expect_continue:
            # The relay always reads the body, so say so at once instead of making curl wait 1 s.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if body.check is not None:
            return True  # chunked: h11 decodes it, events follow
        whole = len(after_head) == head.length  # (the usual read: a head and all its body)
        self._after = AfterHead(None if whole else body, eof)  # Content-Length: h11 is done
        if not self._h11_unused:  # the next cycle's, now: the old one holds a body copy
            self._h11, self._h11_unused = self._new_h11(), True
        if not whole:
            self._take(after_head)
        elif self._reserve(head.length):  # nothing to collect: the read's rest is the body
            self._dispatch(after_head)
        return False

    def _take(self, data: bytes) -> None:
        """Bytes after a head h11 parsed: the rest of its body (counted in the budget as they
        come), then those of a next request, kept with reading paused (as h11's PAUSED) for the
        next cycle's h11."""
        after = self._after
        assert after is not None
        if after.body is not None and not self._reserve(min(len(data), after.body.left)):
            return
        if after.feed(data) and self._body is not None:
            self._dispatch(self._body.join())
        elif after.body is not None:  # more body to come: the deadline is the silence between reads
            if after.eof:  # (it will not: the client closed, as h11 would say)
                self._reject(Rejection(400, "connection closed inside the request body"))
            else:
                self._body_timer()
            return
        if after.kept and self._exchange is not None and not self._discarding:
            self._pause_reading()  # (after a "close" the bytes are never parsed: read on)

    def _reserve(self, n: int) -> bool:
        return self._hold.take(n) or self._reject(OVER_BUDGET)

    def _on_body(self, data: bytes) -> None:
        body = self._body
        assert body is not None
        if body.check is not None and not self._reserve(len(data)):
            return  # (a Content-Length body is counted as its raw bytes come: _take)
        if not body.add(data):
            self._reject(Rejection(413, "request body too large"))

    def _dispatch(self, body: bytes) -> bool:
        """The request is whole, its body ``body``: start its handler. False if the connection
        reads no more."""
        request = self._request
        assert request is not None
        self._timer.cancel()  # the request is in: no client-side deadline while it is answered
        request.body = body
        self._request = self._body = None
        if not request.keep_alive:
            self._discarding = True  # answer it, then close; what follows is never read
        ex = self._exchange = Exchange(self, request, self.transport, self.flow)
        self._task = None  # (a previous answer's task is not this one's to cancel)
        pending = answer(self._handler, ex)  # (most answers are whole when this returns)
        if pending is not None:
            self._task = task = self._loop.create_task(pending)
            task.add_done_callback(self._task_done)
        if self._exchange is ex:  # a longer answer: its loop timer goes (10k streams, 10k timers)
            self._timer.stop()
        # Once this exchange ended, a new h11 holds what follows, checked by _next_buffered.
        return request.keep_alive and self._exchange is ex

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
        if self._closing or not ex.request.keep_alive:
            self.transport.close()
            return
        after, self._after = self._after, None
        if after is None:  # h11 parses; the response state is the exchange's
            buffered, closed = self._h11.trailing_data
            self._h11 = new = self._new_h11()
        else:  # (its next-cycle h11 was made when the head was parsed)
            buffered, closed, new = bytes(after.kept) if after.kept else b"", after.eof, self._h11
        self._h11_unused = not (buffered or closed)
        if buffered:
            new.receive_data(buffered)
        if closed:
            new.receive_data(b"")
        self._head = HeadReader(self._limits.max_head_size)
        if self._await_next_head() and (self._read_paused or closed or buffered):
            if buffered:  # a next request: no new bytes before it is counted (_next_buffered)
                self._pause_reading()
            self._loop.call_soon(self._next_buffered)

    def _next_buffered(self) -> None:
        """After a response: check and parse what h11 buffered (a pipelined request), reading
        again only now, so no new bytes arrive before the buffered ones are counted."""
        if self._closed or self._closing:  # (a shutdown closed it meanwhile: answer no more)
            return
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        buffered = self._h11.trailing_data[0]
        if buffered and self._head is not None and not self._read_head(buffered, False):
            return
        self._handle_events()

    def _reject(self, rejection: Rejection) -> bool:
        """Answer a request we will not serve (bad framing, too large...) and close. Returns
        False: no more events are taken."""
        if not self._closed:
            self._timer.cancel()
            self._hold.release()
            self._closed = self._discarding = True
            refuse(self.transport, rejection, self._request, self._refusals, self._peer)
            self._request = self._body = self._after = None  # (the close lingers: hold nothing)
        return False

    def _pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
