"""``relay serve --trace``: the raw bytes crossing each side, for watching HTTP happen.

Every client connection (``c1``, ``c2``...) and upstream connection (``u1``...) gets an id. Each
read or write prints a timestamp, the id, the direction and the bytes, split after every CRLF
so chunk-size lines, headers and chunk payloads (an SSE event each) get a line of their own,
with CR and LF shown as ``\\r`` and ``\\n``:

    12:00:01.002 c1 client>relay   POST /v1/chat/completions HTTP/1.1\\r\\n
    12:00:01.004 u1 upstream>relay b9\\r\\n
    12:00:01.004 u1 upstream>relay data: {"id":"chatcmpl-...","choices":[...]}\\n\\n\\r\\n

It works by wrapping a protocol (incoming bytes) and handing it a wrapped transport (outgoing
bytes). Without ``--trace`` nothing is wrapped, so it costs nothing. Credentials never reach
the trace (:class:`Redactor`): the values of ``Authorization``, ``Proxy-Authorization``,
``Api-Key``, ``X-Api-Key``, ``Cookie`` and ``Set-Cookie`` lines, and of query parameters that
carry tokens (``access_token``, ``token``, ``api_key``, ``key``...), on either side, are shown
as ``[redacted, N bytes]``, however the bytes are split into reads.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO, cast
from urllib.parse import unquote_plus

_LINE = re.compile(rb".*?\r\n|.+", re.DOTALL)  # one HTTP line (or chunk) per printed line
_MAX_LINE = 150  # longer lines keep their start and end, with their full length shown

SECRET_HEADERS = frozenset({b"authorization", b"proxy-authorization", b"x-api-key", b"api-key",
                            b"cookie", b"set-cookie"})
# Query parameters a token may be given in: the relay's own (``access_token``, read by
# relay.auth.ClientAuth.presented for channels and resumable streams) and the names other
# services use, since ``/v1/*`` queries go upstream as they came. Compared decoded (as
# urllib's parse_qs reads them, so ``access%5Ftoken`` is ``access_token``) and in any case.
SECRET_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "api-key", "key",
                           "auth", "authorization", "password", "secret", "client_secret",
                           "refresh_token", "id_token", "code", "sig", "signature"})
_CAP = 64  # bytes of a line's start (or a parameter's name) kept to decide: longer is no secret

# Where each state looks next (see Redactor).
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z \t]*")  # a header name and blanks (RFC 9110)
_BLANKS = re.compile(rb"[ \t]*")
_PLAIN_STOP = re.compile(rb"[\n?]")
# A secret value ends only at "&", as the relay's own reader (parse_qs) reads it, so a token
# with ";" or "#" in it is hidden whole; elsewhere a ";" starts a parameter too, as some
# upstreams read a query that goes to them as it came.
_PARAM_STOP = re.compile(rb"[=&; \t\r\n]")
_VALUE_STOP = re.compile(rb"[&; \t\r\n]")
_SECRET_STOP = re.compile(rb"[& \t\r\n]")
_LINE_END = re.compile(rb"[\r\n]")
# The states.
_START, _PLAIN, _PARAM, _VALUE, _SECRET_VALUE, _BLANK, _SECRET = range(7)


class Redactor:
    """One direction of one connection, redacted as a stream: the state at the end of a read
    is where the next read goes on, so a credential split between reads, anywhere (inside the
    header name, the value or the CRLF), is found all the same.

    It reads bytes as a small state machine, never holding more than ``_CAP`` bytes: a line's
    start (``_START``) until it is known to be a credential header (``name:``, then its blanks,
    ``_BLANK``, then its value, ``_SECRET``, up to the line's end) or anything else
    (``_PLAIN``); a continuation line (leading blank, obs-fold) of a credential is one too. In
    any plain line, a ``?`` starts a query: parameter names (``_PARAM``) and their values,
    hidden (``_SECRET_VALUE``) for the names in ``SECRET_PARAMS``, shown otherwise
    (``_VALUE``), until a blank or the line's end. Lines end at LF (h11 takes a bare LF as
    one, and the trace shows bytes before any check refuses them). Hidden bytes become
    ``[redacted, N bytes]``, one per run in a read.
    """

    __slots__ = ("_fold", "_kept", "_state")

    def __init__(self) -> None:
        self._state = _START
        self._kept = b""  # the line's start (_START) or the parameter's name (_PARAM)
        self._fold = False  # the line before was a credential's (its continuation is too)

    def feed(self, data: bytes) -> bytes:
        """``data`` as the trace may show it."""
        out: list[bytes] = []
        steps = (self._start, self._plain, self._param, self._value, self._value, self._blank,
                 self._secret)  # (by state)
        i, n = 0, len(data)
        while i < n:
            i = steps[self._state](data, i, out)
        return b"".join(out)

    # Each step reads from ``data[i]`` in its state, appends what may be shown to ``out`` and
    # returns where the next step goes on (``len(data)``: the next read says).

    def _start(self, data: bytes, i: int, out: list[bytes]) -> int:
        n = len(data)
        if not self._kept and self._fold and data[i] in b" \t":
            self._state = _BLANK
            return i
        end = _end(_NAME, data, i, min(n, i + _CAP - len(self._kept)))
        out.append(data[i:end])
        if end == n and len(self._kept) + end - i < _CAP:
            self._kept += data[i:end]  # undecided: the next read says
            return n
        name = (self._kept + data[i:end]).strip(b" \t").lower()
        secret = data[end:end + 1] == b":" and name in SECRET_HEADERS
        self._kept, self._fold = b"", False
        if secret:
            out.append(b":")
            end += 1
        self._state = _BLANK if secret else _PLAIN
        return end

    def _plain(self, data: bytes, i: int, out: list[bytes]) -> int:
        match = _PLAIN_STOP.search(data, i)
        if match is None:
            out.append(data[i:])
            return len(data)
        end = match.end()
        out.append(data[i:end])
        self._state = _START if data[end - 1] == 10 else _PARAM  # (10: LF)
        return end

    def _param(self, data: bytes, i: int, out: list[bytes]) -> int:
        match = _PARAM_STOP.search(data, i)
        end = len(data) if match is None else match.start()
        out.append(data[i:end])
        if len(self._kept) <= _CAP:
            self._kept += data[i:end][:_CAP + 1]
        if match is None:
            return end
        stop = data[end]
        if stop == 61:  # "=": the parameter's value follows
            param = unquote_plus(self._kept.decode("latin-1")).lower()
            self._state = _SECRET_VALUE if param in SECRET_PARAMS else _VALUE
            out.append(b"=")
            end += 1
        elif stop in b"&;":  # another parameter
            out.append(data[end:end + 1])
            end += 1
        else:  # the query's end
            self._state = _PLAIN
        self._kept = b""
        return end

    def _value(self, data: bytes, i: int, out: list[bytes]) -> int:
        secret = self._state == _SECRET_VALUE
        match = (_SECRET_STOP if secret else _VALUE_STOP).search(data, i)
        end = len(data) if match is None else match.start()
        out.append(_hidden(data[i:end]) if secret else data[i:end])
        if match is None:
            return end
        if data[end] in b"&;":  # another parameter
            out.append(data[end:end + 1])
            self._state = _PARAM
            return end + 1
        self._state = _PLAIN
        return end

    def _blank(self, data: bytes, i: int, out: list[bytes]) -> int:
        end = _end(_BLANKS, data, i, len(data))
        out.append(data[i:end])
        if end < len(data):
            self._state = _SECRET
        return end

    def _secret(self, data: bytes, i: int, out: list[bytes]) -> int:
        match = _LINE_END.search(data, i)
        end = len(data) if match is None else match.start()
        out.append(_hidden(data[i:end]))
        if match is None:
            return end
        out.append(data[end:end + 1])
        if data[end] == 10:
            self._state, self._fold = _START, True
        return end + 1


def _end(pattern: re.Pattern[bytes], data: bytes, start: int, stop: int) -> int:
    """Where a run of ``pattern`` (which may match nothing) from ``start`` ends."""
    match = pattern.match(data, start, stop)
    return start if match is None else match.end()


def _hidden(value: bytes) -> bytes:
    return b"[redacted, %d bytes]" % len(value) if value else b""


def redact(data: bytes) -> bytes:
    """Bytes seen alone (a whole line, say), with their credentials hidden."""
    return Redactor().feed(data)


class Tracer:
    """Numbers connections and prints their bytes to ``out`` (stderr by default)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self._ids = {"c": itertools.count(1), "u": itertools.count(1)}

    def new_id(self, kind: str) -> str:
        return f"{kind}{next(self._ids[kind])}"

    def show(self, conn_id: str, direction: str, data: bytes, seen: Redactor) -> None:
        """Print one read or write of a connection's direction (``seen``: its redactor)."""
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        prefix = f"{stamp} {conn_id:<3} {direction:<15}"
        lines = []
        for piece in _LINE.findall(seen.feed(data)):
            text = piece.decode("utf-8", "backslashreplace")
            text = text.replace("\r", "\\r").replace("\n", "\\n")
            if len(text) > _MAX_LINE:
                text = f"{text[:_MAX_LINE - 40]} ...({len(piece)} bytes)... {text[-24:]}"
            lines.append(f"{prefix} {text}")
        if not data:
            lines.append(f"{prefix} (EOF)")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def wrap(self, protocol: asyncio.Protocol, kind: str) -> TracingProtocol:
        peer = {"c": ("client>relay", "relay>client"), "u": ("upstream>relay", "relay>upstream")}
        return TracingProtocol(protocol, self, self.new_id(kind), *peer[kind])


class TracingTransport:
    """Forwards to the real transport, showing what is written."""

    def __init__(self, inner: asyncio.Transport, tracer: Tracer, conn_id: str,
                 direction: str) -> None:
        self._inner, self._tracer, self._id, self._dir = inner, tracer, conn_id, direction
        self._sent = Redactor()

    def write(self, data: bytes) -> None:
        self._tracer.show(self._id, self._dir, bytes(data), self._sent)
        self._inner.write(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        parts = list(parts)
        self._tracer.show(self._id, self._dir, b"".join(parts), self._sent)
        self._inner.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TracingProtocol(asyncio.Protocol):
    """Wraps a protocol: shows what it reads, and gives it a :class:`TracingTransport`."""

    def __init__(self, inner: asyncio.Protocol, tracer: Tracer, conn_id: str, incoming: str,
                 outgoing: str) -> None:
        self.inner, self._tracer, self._id = inner, tracer, conn_id
        self._in, self._out = incoming, outgoing
        self._seen = Redactor()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracer.out.write(f"--- {self._id} connected\n")
        wrapped = TracingTransport(cast(asyncio.Transport, transport), self._tracer, self._id,
                                   self._out)
        self.inner.connection_made(cast(asyncio.Transport, wrapped))

    def data_received(self, data: bytes) -> None:
        self._tracer.show(self._id, self._in, data, self._seen)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self._tracer.show(self._id, self._in, b"", self._seen)
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracer.out.write(f"--- {self._id} closed{f': {exc}' if exc else ''}\n")
        self._tracer.out.flush()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
