"""The request side of a client connection, sans-IO: bytes in, request events out.

Shaped like h11's ``Connection``: :meth:`RequestReader.feed` takes the bytes of a read,
:meth:`~RequestReader.feed_eof` the client's EOF, and :meth:`~RequestReader.next_event` gives
what they amount to, one event at a time:

* :class:`Request`: a whole request, its head (:class:`~relay.http1.known_heads.ParsedHead`)
  and its body;
* :class:`Reject`: a request the relay refuses before any handler sees it (the status and the
  reason, :class:`~relay.http1.request_head.Rejection`, and the head when it was parsed);
  nothing more is read after one;
* :data:`CONTINUE`: the client waits for ``100 Continue`` before it sends its body;
* :data:`NEED_DATA`: nothing more can be said until more bytes come;
* :data:`PAUSED`: a request was given, and bytes of the next one (pipelined) are buffered:
  they are read only after :meth:`~RequestReader.next_cycle`, once its answer ended;
* :data:`CLOSED`: the client's EOF, between requests (or while a request is being answered).

Where a request ends is decided here, on the raw bytes, before anything else reads them:
:class:`~relay.http1.request_head.HeadReader` frames and counts the head, and
:func:`~relay.http1.request_head.check_head` judges it with the RFC 9112 rules. A head seen
before, byte for byte (:class:`~relay.http1.known_heads.KnownHeads`), is what it was then;
another is parsed by a fresh h11 server connection, which also decodes a chunked body
(checked beside it by :class:`~relay.http1.request_body.ChunkedRequestCheck`); a
``Content-Length`` body is counted here, off the raw bytes. ``received`` counts the body
bytes received so far, so the connection can hold them against its memory budget.

A request whose bytes are exactly those of one read, of a known head, is marked ``direct``:
nothing was buffered before it nor after it (the fast path of the connection may answer it
without an exchange).
"""

from __future__ import annotations

import enum

import h11

from ..config import Limits
from .known_heads import KnownHeads, ParsedHead
from .request_body import RequestBody
from .request_head import HeadReader, Rejection, check_head, parse_error


class Request:
    """A whole request: its head, its body, and whether the fast path may take it."""

    __slots__ = ("body", "direct", "head")

    def __init__(self, head: ParsedHead, body: bytes, direct: bool) -> None:
        self.head, self.body, self.direct = head, body, direct


class Reject:
    """A request refused before any handler: why, and its head when it was parsed."""

    __slots__ = ("head", "rejection")

    def __init__(self, rejection: Rejection, head: ParsedHead | None) -> None:
        self.rejection, self.head = rejection, head


class Signal(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"
    CONTINUE = "100-continue"
    CLOSED = "closed"


NEED_DATA, PAUSED, CONTINUE, CLOSED = (Signal.NEED_DATA, Signal.PAUSED, Signal.CONTINUE,
                                       Signal.CLOSED)
Event = Request | Reject | Signal


class Part(enum.Enum):
    """Where the reader is in the current request."""

    IDLE = "idle"  # awaiting the first byte of a head
    HEAD = "head"  # inside a head
    BODY = "body"  # inside a Content-Length body
    CHUNKED = "chunked"  # inside a chunked body (h11 decodes it)
    DONE = "done"  # a request was given; the next waits for next_cycle()
    FAILED = "failed"  # a request was refused: nothing more is read


# (module names: an enum member read from its class costs a lookup through the enum type)
IDLE, HEAD, BODY, CHUNKED = Part.IDLE, Part.HEAD, Part.BODY, Part.CHUNKED
DONE, FAILED = Part.DONE, Part.FAILED
_CLOSED_INSIDE_BODY = Rejection(400, "connection closed inside the request body")


class RequestReader:
    """Turns a client connection's bytes into request events (see the module docstring)."""

    __slots__ = ("_body", "_buf", "_eof", "_eof_given", "_h11", "_head", "_heads", "_heads_fed",
                 "_known", "_limits", "_lone", "_scanned", "part", "received", "refusal")

    def __init__(self, limits: Limits, known: KnownHeads) -> None:
        self._limits, self._known = limits, known
        self._buf: bytes | bytearray = b""  # bytes not yet taken by a head or a body
        self._scanned = 0  # of _buf, bytes the head reader has seen
        self._eof = self._eof_given = False  # (given: to h11, decoding a chunked body)
        self._lone = False  # _buf is one read's bytes, nothing before them
        self._heads = HeadReader(limits.max_head_size)
        self._heads_fed = False  # it saw part of a head (else it is as new)
        self._head: ParsedHead | None = None
        self._body: RequestBody | None = None
        self._h11: h11.Connection | None = None
        self.part = IDLE
        self.received = 0  # body bytes of the current request received so far
        self.refusal: Rejection | None = None  # when set, every head parsed is refused so

    @property
    def head(self) -> ParsedHead | None:
        """The current request's head, once parsed."""
        return self._head

    @property
    def pending(self) -> bool:
        """Bytes or the client's EOF wait to be read (after a request: a next one's)."""
        return len(self._buf) > 0 or self._eof

    def feed(self, data: bytes) -> None:
        """The bytes of one read."""
        buf = self._buf
        if not buf:
            self._buf, self._lone = data, True
        elif isinstance(buf, bytearray):
            buf += data
        else:
            self._buf, self._lone = bytearray(buf) + data, False

    def feed_eof(self) -> None:
        self._eof = True

    def next_cycle(self) -> bool:
        """The answer to the request given ended: read the next one. True when bytes (or the
        EOF) wait for it already (:attr:`pending`)."""
        self.part = IDLE
        if self._heads_fed:
            self._heads, self._heads_fed = HeadReader(self._limits.max_head_size), False
        self._head, self._scanned, self.received, self._lone = None, 0, 0, False
        return len(self._buf) > 0 or self._eof

    def next_event(self) -> Event:
        """What the bytes fed so far amount to: the head is read here (the usual case: a
        whole request in one read is given in this one call), a body or the wait after a
        request by :meth:`_after_head`."""
        part = self.part
        if part is not IDLE and part is not HEAD:
            return self._after_head(part)
        buf, scanned = self._buf, self._scanned
        if len(buf) == scanned:  # nothing new
            return self._head_eof() if self._eof else NEED_DATA
        verdict = self._heads.feed(buf[scanned:] if scanned else buf)
        if not verdict:  # (the head reader holds the start of this head: a new one for the next)
            self._scanned, self.part, self._heads_fed = len(buf), HEAD, True
            return self._head_eof() if self._eof else NEED_DATA
        if isinstance(verdict, Rejection):
            return self._reject(verdict)
        if isinstance(buf, bytes):  # (next_cycle() scans the next head anew)
            head_bytes, rest = buf[:verdict], buf[verdict:]
        else:  # (a head that came in several reads)
            head_bytes, rest = bytes(buf[:verdict]), bytes(buf[verdict:])
        known = self._known.get(head_bytes)
        if known is not None:
            if len(rest) == known.length and not known.expect_continue and not self.refusal:
                # (the usual: a known head and its whole body, alone; never chunked)
                self._head, self._buf = known, b""
                self.received, self.part = known.length, DONE
                return Request(known, rest, self._lone)
            self._buf = rest
            return self._start(known, rest, True)
        self._buf = rest
        parsed = self._parse(head_bytes)
        if isinstance(parsed, Reject):
            return parsed
        self._known.add(head_bytes, parsed)
        return self._start(parsed, rest, False)

    def _after_head(self, part: Part) -> Event:
        if part is BODY:
            return self._read_body()
        if part is CHUNKED:
            return self._read_chunked()
        if part is DONE:
            return PAUSED if self._buf else CLOSED if self._eof else NEED_DATA
        return NEED_DATA  # (refused: nothing more)

    # -- the head ------------------------------------------------------------------------------

    def _parse(self, head_bytes: bytes) -> ParsedHead | Reject:
        """A head not seen before: judged on its bytes, then parsed by a fresh h11."""
        rejection = check_head(head_bytes, self._limits)
        if rejection is not None:
            return self._reject(rejection)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head_size)
        conn.receive_data(head_bytes)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return self._reject(parse_error(exc.error_status_hint, str(exc)))
        assert isinstance(event, h11.Request)  # (a whole head, checked: h11 has it all)
        parsed = ParsedHead.of(event.method, event.target, event.headers, event.http_version,
                               conn.they_are_waiting_for_100_continue)
        if isinstance(parsed, Rejection):  # (never kept: a refusal is decided each time)
            return self._reject(self.refusal or parsed)
        if parsed.chunked:
            self._h11 = conn  # (it decodes the body)
        return parsed

    def _head_eof(self) -> Event:
        """The client closed between requests, or inside a head (as h11 says it)."""
        if self.part is IDLE:
            return CLOSED
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(bytes(self._buf))
        conn.receive_data(b"")
        try:
            conn.next_event()
        except h11.RemoteProtocolError as exc:
            return self._reject(parse_error(exc.error_status_hint, str(exc)))
        return self._reject(parse_error(400, ""))  # pragma: no cover  (h11 always refuses)

    def _start(self, head: ParsedHead, rest: bytes, known: bool) -> Event:
        """A head: its body read whole at once when it is all there, else as it comes."""
        self._head = head
        if self.refusal is not None:
            return self._reject(self.refusal)
        length = head.length
        if not head.chunked and not head.expect_continue and len(rest) >= length:
            body = rest if len(rest) == length else rest[:length]
            self._buf = rest[length:] if len(rest) > length else b""
            self.received, self.part = length, DONE
            return Request(head, body, known and self._lone and not self._buf)
        self._body = body_ = RequestBody(self._limits.max_body_size, head.chunked, length)
        if body_.check is not None:
            self.part = CHUNKED
            rejection = body_.check.feed(rest)
            if rejection is not None:
                return self._reject(rejection)
            assert self._h11 is not None
            if rest:  # (h11 takes b"" for the EOF)
                self._h11.receive_data(rest)
            self._buf = b""
        else:
            self.part = BODY
        return CONTINUE if head.expect_continue else self.next_event()

    # -- the body ------------------------------------------------------------------------------

    def _read_body(self) -> Event:
        """A Content-Length body: its bytes counted off the raw input."""
        body, buf = self._body, self._buf
        assert body is not None
        if buf:
            self.received += min(len(buf), body.left)
            rest = body.take(bytes(buf))
            if rest is not None:
                return self._request(rest)
            self._buf = b""
        return self._reject(_CLOSED_INSIDE_BODY) if self._eof else NEED_DATA

    def _read_chunked(self) -> Event:
        """A chunked body: its framing checked here, its bytes decoded by h11."""
        body, conn = self._body, self._h11
        assert body is not None and body.check is not None and conn is not None
        if self._buf:
            data, self._buf = bytes(self._buf), b""
            rejection = body.check.feed(data)
            if rejection is not None:
                return self._reject(rejection)
            conn.receive_data(data)
        if self._eof and not self._eof_given:
            self._eof_given = True
            conn.receive_data(b"")
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._reject(parse_error(exc.error_status_hint, str(exc)))
            if isinstance(event, h11.Data):
                self.received += len(event.data)
                if not body.add(event.data):
                    return self._reject(Rejection(413, "request body too large"))
            elif isinstance(event, h11.EndOfMessage):
                self._h11 = None
                return self._request(conn.trailing_data[0])
            else:
                return NEED_DATA

    def _request(self, rest: bytes | bytearray) -> Request:
        """The body is whole; ``rest``: the bytes after it (a next request's)."""
        body = self._body
        assert body is not None and self._head is not None
        self._buf, self._body, self.part = rest, None, DONE
        return Request(self._head, body.join(), False)

    def stop(self) -> None:
        """Read nothing more (a request was refused): hold nothing from now on."""
        self.part, self._buf, self._body, self._h11 = FAILED, b"", None, None

    def _reject(self, rejection: Rejection) -> Reject:
        self.stop()
        return Reject(rejection, self._head)
