"""The one scripted upstream: a raw TCP server whose script decides exactly which bytes the
upstream sends and when, and which records what the relay did to each connection."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class UpstreamConn:
    """One connection accepted by a ScriptedUpstream, as its script sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: bytes = b""
    body: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    request_line: bytes = b""
    closed_at: float | None = None  # time.monotonic() when the relay's side closed
    closed: threading.Event = field(default_factory=threading.Event)

    async def read_request(self) -> bool:
        """Read one request (head and Content-Length body); False on EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        self.head = head
        lines = head.split(b"\r\n")
        self.request_line = lines[0]
        self.headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                self.headers[name.strip().lower()] = value.strip()
        n = int(self.headers.get(b"content-length", b"0"))
        self.body = await self.reader.readexactly(n) if n else b""
        return True

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def watch_close(self) -> None:
        """Wait for the relay to close this connection (EOF or reset); record when."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.closed_at = time.monotonic()
        self.closed.set()


Script = Callable[[UpstreamConn], Awaitable[None]]


class ScriptedUpstream:
    """A TCP server on 127.0.0.1 whose every connection runs ``script``: tests decide exactly
    which bytes the upstream sends and when, and observe what the relay did to the connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[UpstreamConn] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> ScriptedUpstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for conn in self.connections:
            conn.writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = UpstreamConn(reader, writer)
        self.connections.append(conn)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def chunked(*pieces: bytes) -> bytes:
    """Encode pieces as HTTP chunks (no terminating chunk)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


OK_JSON = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


@dataclass(frozen=True)
class Received:
    """One request as the upstream received it."""

    request_line: bytes
    head: bytes
    headers: dict[bytes, bytes]
    body: bytes


def answering(received: list[Received] | None = None, reply: bytes = OK_JSON,
              before_reply: Callable[[UpstreamConn], Awaitable[bool]] | None = None) -> Script:
    """The usual upstream: every request on every connection gets ``reply`` (``200 {}``) and is
    recorded in ``received``. ``before_reply`` may hold the answer back (it returns False to
    close the connection without answering)."""

    async def script(conn: UpstreamConn) -> None:
        while await conn.read_request():
            if received is not None:
                received.append(Received(conn.request_line, conn.head, dict(conn.headers),
                                         conn.body))
            if before_reply is not None and not await before_reply(conn):
                return
            conn.write(reply)

    return script
