"""Test harness: servers run on a uvloop loop in a background thread; tests drive them from the
main thread with real sockets (raw, curl, http.client, the openai SDK)."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import h11
import pytest
import uvloop

T = TypeVar("T")


class LoopThread:
    """A uvloop event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        # Under filterwarnings=error a ResourceWarning raised inside uvloop's close() makes it
        # hang instead of reporting; fixtures close what they opened, so ignore stragglers here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            self.loop.close()


def require_tool(name: str) -> str:
    """The tool's path; skip without it, or fail under RELAY_REQUIRE_ALL=1 (CI)."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed"
        if os.environ.get("RELAY_REQUIRE_ALL") == "1":
            pytest.fail(msg + " (RELAY_REQUIRE_ALL=1)")
        pytest.skip(msg)
    return path


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
               ) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- a scripted raw upstream ------------------------------------------------------------------


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


# -- client side --------------------------------------------------------------------------------


OPEN_SOCKETS: list[socket.socket] = []  # closed after each test by an autouse fixture


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    OPEN_SOCKETS.append(sock)
    return sock


def recv_until(sock: socket.socket, done: Callable[[bytes], bool], received: bytes = b""
               ) -> bytes:
    """Read until ``done(everything so far)``; failing if the peer closes first (the socket's
    timeout bounds each read)."""
    while not done(received):
        data = sock.recv(65536)
        assert data, received
        received += data
    return received


def read_until_close(sock: socket.socket) -> bytes:
    out = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(out)
        out.append(data)


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    http_version: bytes


class H11Client:
    """A blocking HTTP/1.1 client over one socket, parsing replies with h11."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)

    def request_bytes(self, method: bytes, target: bytes, body: bytes = b"",
                      headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
        hdrs = [(b"host", b"relay.test"), *(headers or [])]
        if body:
            hdrs.append((b"content-length", b"%d" % len(body)))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if body:
            data += self.conn.send(h11.Data(data=body)) or b""
        return data + (self.conn.send(h11.EndOfMessage()) or b"")

    def send(self, method: bytes, target: bytes, body: bytes = b"",
             headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.sock.sendall(self.request_bytes(method, target, body, headers))

    def read_reply(self) -> Reply:
        response: h11.Response | None = None
        body = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                assert response is not None
                return Reply(response.status_code, dict(response.headers), b"".join(body),
                             response.http_version)

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()


def chat_body(max_tokens: int = 4, stream: bool = True, **extra: Any) -> bytes:
    import json

    doc = {"model": "mock-gpt", "stream": stream, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}], **extra}
    return json.dumps(doc).encode()


def sse_data(body: bytes) -> list[bytes]:
    """The ``data:`` payloads of a well-formed LF-framed event stream (test-side, simple)."""
    return [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a listener the test starts at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def unaccepting_port() -> Iterator[int]:
    """A port whose listener never accepts and whose accept queue is full, so the kernel drops
    new SYNs and a connect() to it hangs (until the caller's timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue (backlog 0 still admits one or two)
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        _, connected, _ = select.select([], fillers, [], 5)  # the queue holds its first one(s)
        assert connected
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()
