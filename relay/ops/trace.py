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
the trace: the values of ``Authorization``, ``Proxy-Authorization``, ``Api-Key``,
``X-Api-Key``, ``Cookie`` and ``Set-Cookie`` lines, on either side, are shown as
``[redacted, N bytes]``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO, cast

_LINE = re.compile(rb".*?\r\n|.+", re.DOTALL)  # one HTTP line (or chunk) per printed line
_MAX_LINE = 150  # longer lines keep their start and end, with their full length shown
_SECRET = re.compile(rb"((?:proxy-)?authorization|x-api-key|api-key|cookie|set-cookie)"
                     rb"([ \t]*:[ \t]*)([^\r\n]*)", re.IGNORECASE)


def redact(line: bytes) -> bytes:
    """A header line with its credential value replaced (its name and length kept)."""
    match = _SECRET.match(line)
    if match is None:
        return line
    return b"%s%s[redacted, %d bytes]%s" % (match[1], match[2], len(match[3]),
                                            line[match.end():])


class Tracer:
    """Numbers connections and prints their bytes to ``out`` (stderr by default)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self._ids = {"c": itertools.count(1), "u": itertools.count(1)}

    def new_id(self, kind: str) -> str:
        return f"{kind}{next(self._ids[kind])}"

    def show(self, conn_id: str, direction: str, data: bytes) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        prefix = f"{stamp} {conn_id:<3} {direction:<15}"
        lines = []
        for piece in _LINE.findall(data):
            text = redact(piece).decode("utf-8", "backslashreplace")
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

    def write(self, data: bytes) -> None:
        self._tracer.show(self._id, self._dir, bytes(data))
        self._inner.write(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        parts = list(parts)
        self._tracer.show(self._id, self._dir, b"".join(parts))
        self._inner.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TracingProtocol(asyncio.Protocol):
    """Wraps a protocol: shows what it reads, and gives it a :class:`TracingTransport`."""

    def __init__(self, inner: asyncio.Protocol, tracer: Tracer, conn_id: str, incoming: str,
                 outgoing: str) -> None:
        self.inner, self._tracer, self._id = inner, tracer, conn_id
        self._in, self._out = incoming, outgoing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracer.out.write(f"--- {self._id} connected\n")
        wrapped = TracingTransport(cast(asyncio.Transport, transport), self._tracer, self._id,
                                   self._out)
        self.inner.connection_made(cast(asyncio.Transport, wrapped))

    def data_received(self, data: bytes) -> None:
        self._tracer.show(self._id, self._in, data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self._tracer.show(self._id, self._in, b"")
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracer.out.write(f"--- {self._id} closed{f': {exc}' if exc else ''}\n")
        self._tracer.out.flush()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
