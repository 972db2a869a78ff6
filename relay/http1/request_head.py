"""Strict checks of a raw request head, before h11 parses it (sans-IO: bytes in, a verdict out).

h11 0.16 is lenient where a proxy must not be: it accepts bare LF line ends, obs-fold,
control characters in header values, Content-Length together with Transfer-Encoding, any
``HTTP/d.d`` version, HTTP/1.0 with chunked, any ``Host`` value and any number of headers, and it
answers every Transfer-Encoding problem 501. Two parsers that disagree on where a request ends
are what request smuggling exploits, so the relay decides on the raw bytes first, with the RFC
9112 rules, and hands h11 only heads that have one meaning.

:class:`HeadReader` finds the end of the head in the incoming bytes and counts its size itself
(h11 checks its own limit only when it needs more data, so a large head that arrives in one read
would pass). :func:`check_head` then judges the complete head. Both return a :class:`Rejection`
(status and message) or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import Limits

# A control character other than HTAB, CR and LF. (Bare CR and LF are found by counting: a head
# whose CR, LF and CRLF counts are equal has neither, cheaper than one regex with look-arounds
# for all of it: bench/README.md has the figures.)
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|host)[ \t]*:[ \t]*([^\r]*?)[ \t]*"
                      rb"(?=\r\n)", re.IGNORECASE)
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")
# uri-host [ ":" port ] (RFC 3986): an IP literal or a reg-name; no userinfo, path or spaces.
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(:[0-9]{0,5})?")
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2
METHODS = frozenset([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
_NOT_ALLOWED = frozenset([b"CONNECT", b"TRACE"])
_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request is refused: the status to answer (then the connection closes), the
    message for the OpenAI-style error body, any headers to add (``Retry-After``...), and the
    ``reason`` its access-log line gives when that is not the message (a message that may quote
    the client's bytes, which could hold a credential, is never logged)."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    reason: str = ""

    @property
    def logged(self) -> str:
        return self.reason or self.message


def parse_error(status: int, detail: str) -> Rejection:
    """h11's refusal of a request: its words for the client (they may quote a header line),
    not for the log."""
    return Rejection(status, detail or "bad request", reason="malformed request (h11)")


class HeadReader:
    """Counts the bytes of one request head as they arrive and finds where it ends.

    ``feed(data)`` returns the head's length once its blank line has arrived (counted from the
    first byte fed), 0 while more is needed, or a :class:`Rejection` when the head is already
    too large or carries a bare LF (which h11 would take as a line end, and this reader never
    does). Only the last 3 bytes of one read are kept, to find a CRLFCRLF split across reads.
    """

    __slots__ = ("_limit", "_seen", "_tail")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen = 0
        self._tail: bytes | bytearray = b""

    def feed(self, data: bytes | bytearray) -> int | Rejection:
        tail, offset = self._tail, self._seen
        if tail:
            window, offset = tail + data, offset - len(tail)
        else:
            window = data
        end = window.find(_END)
        if end >= 0:
            size = offset + end + 4
            return Rejection(431, "request head too large") if size > self._limit else size
        self._seen += len(data)
        if self._seen > self._limit:
            return Rejection(431, "request head too large")
        if b"\n" in data and window.count(b"\n") != window.count(b"\r\n"):
            return Rejection(400, "bare LF in the request head: lines end with CRLF")
        self._tail = window[-3:]
        return 0


def check_head(head: bytes, limits: Limits) -> Rejection | None:
    """Judge a complete request head (request line to the blank line, CRLF line ends): its
    bytes, its sizes, its request line, then the fields that say where it ends."""
    rejection = _check_bytes(head) or _check_sizes(head, limits)
    if rejection is not None:
        return rejection
    request_line = head[: head.find(b"\r\n")]
    rejection = _check_request_line(request_line)
    if rejection is not None:
        return rejection
    http11 = request_line.endswith(b"HTTP/1.1")
    hosts, lengths, codings = _framing_fields(head)
    return (_check_host(hosts, http11) or _check_length(lengths, limits)
            or _check_codings(codings, bool(lengths), http11))


def _check_bytes(head: bytes) -> Rejection | None:
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        return Rejection(400, "bare CR or LF in the request head: lines end with CRLF")
    if b"\n " in head or b"\n\t" in head:
        return Rejection(400, "obsolete line folding (or whitespace before a header name)")
    if _CTL.search(head) is not None:
        return Rejection(400, "control character in the request head")
    return None


def _check_sizes(head: bytes, limits: Limits) -> Rejection | None:
    if head.find(b"\r\n") > limits.max_line_size:
        return Rejection(414, "request line too long")
    if head.count(b"\r\n") - 2 > limits.max_headers:
        return Rejection(431, f"more than {limits.max_headers} request headers")
    if limits.max_line_size < len(head) and any(
        len(line) > limits.max_line_size for line in head.split(b"\r\n")
    ):
        return Rejection(431, "request header line too long")
    return None


def _check_request_line(request_line: bytes) -> Rejection | None:
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return Rejection(400, "invalid request line")
    method, target, version = parts
    if _VERSION.fullmatch(version) is None:
        return Rejection(400, "invalid HTTP version")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        return Rejection(505, "HTTP version not supported: the relay speaks HTTP/1.1 and 1.0")
    if TOKEN.fullmatch(method) is None:
        return Rejection(400, "invalid method: not a token")
    if method in _NOT_ALLOWED:
        return Rejection(405, f"method {method.decode('latin-1')} not allowed: the relay is not "
                         "a forward proxy")
    if method not in METHODS:
        return Rejection(501, "method not implemented")
    if not target.startswith(b"/"):
        if _ABSOLUTE.match(target):
            return Rejection(400, "absolute-form target: the relay is not a forward proxy and "
                             "only serves origin-form paths")
        return Rejection(400, "invalid request target")
    return None


def _framing_fields(head: bytes) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The Host values, the Content-Length values and the transfer codings of a head."""
    hosts: list[bytes] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in _FRAMING.findall(head):
        name = name.lower()
        if name == b"host":
            hosts.append(value)
        elif name == b"content-length":
            lengths.append(value)
        else:
            codings += [c.strip().lower() for c in value.split(b",")]
    return hosts, lengths, codings


def _check_host(hosts: list[bytes], http11: bool) -> Rejection | None:
    if len(hosts) > 1:
        return Rejection(400, "more than one Host header")
    if hosts and _HOST.fullmatch(hosts[0]) is None:
        return Rejection(400, "invalid Host header")
    if http11 and not hosts:
        return Rejection(400, "missing Host header (required in HTTP/1.1)")
    return None


def _check_length(lengths: list[bytes], limits: Limits) -> Rejection | None:
    if len(lengths) > 1:
        return Rejection(400, "more than one Content-Length header")
    if lengths:
        if not lengths[0].isdigit() or len(lengths[0]) > 18:
            return Rejection(400, "invalid Content-Length")
        if int(lengths[0]) > limits.max_body_size:
            return Rejection(413, "request body too large")
    return None


def _check_codings(codings: list[bytes], has_length: bool, http11: bool) -> Rejection | None:
    if not codings:
        return None
    if has_length:
        return Rejection(400, "both Content-Length and Transfer-Encoding: ambiguous length")
    if not http11:
        return Rejection(400, "Transfer-Encoding in an HTTP/1.0 request")
    if b"" in codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        # RFC 9112 6.3: chunked must be the final coding, once; else the length is unknown.
        return Rejection(400, "invalid Transfer-Encoding: chunked must come last, once")
    if len(codings) > 1:
        return Rejection(501, "transfer codings other than chunked are not implemented")
    return None
