"""Client responses, sans-IO: the head's bytes, and one small writer object per body framing.

:func:`start_response` decides how a response body is framed (RFC 9112 section 6.3), the way
h11 does for a server: ``Content-Length`` when the length is known; otherwise chunked for an
HTTP/1.1 client, or close-delimited (no framing header, ``Connection: close``) for HTTP/1.0,
which has no chunked encoding; no body at all for HEAD, 204 and 304. It returns the head's
bytes and the writer for the body:

* :class:`ChunkedBody`: frames each payload piece as a chunk (size line, payload, CRLF), so
  each upstream read reaches the client as it arrived; the last chunk ends the body;
* :class:`LengthBody`: writes the declared number of bytes, no more;
* :class:`CloseBody`: writes bytes as they are; the end is the connection's close;
* :class:`NoBody`: writes nothing.

A writer never copies a payload: ``frame`` returns the pieces for one ``writelines`` (one
``writev`` system call), the payload objects among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from ..errors import error_body, error_type
from .messages import Headers
from .request_head import Rejection

LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk's pieces for ``writelines``: size line, payload (not copied), CRLF.

    Callers must never frame an empty payload: a zero-size chunk ends the body.
    """
    return b"%x\r\n" % len(data), data, _CRLF


class BodyWriter:
    """The framing of one response body (see the module docstring).

    ``appendable``: bytes the upstream never sent may follow what it sent (the relay's final SSE
    error event), as the body has no declared length; ``chunked``: the client reads chunks, so
    already-framed chunks may be written as they are; ``closes``: the body ends only when the
    connection closes.
    """

    __slots__ = ()
    appendable = False
    chunked = False
    closes = False

    def frame(self, pieces: list[bytes]) -> Sequence[bytes]:
        """The bytes to write for these payload pieces (none of them empty)."""
        return pieces

    def end(self) -> bytes:
        """The bytes that end the body."""
        return b""


class NoBody(BodyWriter):
    """HEAD, 204 and 304 responses: whatever is written, nothing goes out."""

    __slots__ = ()

    def frame(self, pieces: list[bytes]) -> Sequence[bytes]:
        return ()


class LengthBody(BodyWriter):
    """A body of exactly ``length`` bytes; writing more, or ending early, is a bug."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def frame(self, pieces: list[bytes]) -> Sequence[bytes]:
        for piece in pieces:
            self.remaining -= len(piece)
        if self.remaining < 0:
            raise ValueError("more body bytes than the declared Content-Length")
        return pieces

    def end(self) -> bytes:
        if self.remaining:
            raise ValueError(f"body ended {self.remaining} bytes short of its Content-Length")
        return b""


class ChunkedBody(BodyWriter):
    """``Transfer-Encoding: chunked``: a chunk per payload piece, the last chunk at the end."""

    __slots__ = ()
    appendable = True
    chunked = True

    def frame(self, pieces: list[bytes]) -> Sequence[bytes]:
        if len(pieces) == 1:
            return chunk(pieces[0])
        out: list[bytes] = []
        for data in pieces:
            out += chunk(data)
        return out

    def end(self) -> bytes:
        return LAST_CHUNK


class CloseBody(BodyWriter):
    """HTTP/1.0: no framing; the client knows the body ended when the connection closes."""

    __slots__ = ()
    appendable = True
    closes = True


def request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    """An HTTP/1.1 request head from parts already validated (the client's request, parsed by
    h11; the relay's own headers, checked where they are made), ``Host`` first: the bytes h11
    writes for the same request (a test compares them), at a fraction of its cost."""
    if headers and headers[0][0] != b"host":  # (h11 writes Host first, RFC 9110 7.2)
        headers = sorted(headers, key=lambda h: h[0] != b"host")
    lines = b"".join([b"%s: %s\r\n" % (name, value) for name, value in headers])
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, lines)


def start_response(method: bytes, http_version: bytes, status: int, reason: bytes,
                   headers: Headers, length: int | None, keep_alive: bool
                   ) -> tuple[bytes, BodyWriter]:
    """The response head's bytes and the body's writer. ``headers`` carry no framing header;
    ``keep_alive`` False adds ``Connection: close``, as does a close-delimited body.

    The bytes are what h11 writes for the same response (a test compares them): the status
    line, the headers as given, then the framing header and ``Connection: close`` (h11's
    capitalization)."""
    no_body = method == b"HEAD" or status in (204, 304) or status < 200
    framing = b""
    writer: BodyWriter
    if length is not None:
        framing = b"content-length: %d\r\n" % length
        writer = NoBody() if no_body else LengthBody(length)
    elif status in (204, 304) or status < 200:
        writer = NoBody()
    elif http_version == b"1.1":
        framing = b"Transfer-Encoding: chunked\r\n"  # (for HEAD too: what a GET would get)
        writer = NoBody() if no_body else ChunkedBody()
    else:
        writer = NoBody() if no_body else CloseBody()
        keep_alive = keep_alive and no_body
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    lines += [name + b": " + value + _CRLF for name, value in headers]
    if framing:
        lines.append(framing)
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    lines.append(_CRLF)
    return b"".join(lines), writer


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")


def error_response(rejection: Rejection) -> bytes:
    """A whole refusal: the status, an OpenAI-style JSON error body, ``Connection: close``."""
    status = rejection.status
    body = error_body(rejection.message, error_type(status), None)
    head, _ = start_response(b"GET", b"1.1", status, reason_phrase(status),
                             [(b"content-type", b"application/json"), *rejection.headers],
                             len(body), keep_alive=False)
    return head + body
