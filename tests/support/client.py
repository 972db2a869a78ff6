"""The client side of tests: raw sockets closed after each test, and a blocking h11 client."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11

_SAMPLE = re.compile(r'([a-z_]+)(\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})? '
                     r'(-?[0-9.]+(?:e[+-]?[0-9]+)?|\+Inf)')
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
        given = headers or []
        hdrs = given if any(n.lower() == b"host" for n, _ in given) else [
            (b"host", b"127.0.0.1"), *given]
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
    doc = {"model": "mock-gpt", "stream": stream, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}], **extra}
    return json.dumps(doc).encode()


def sse_data(body: bytes) -> list[bytes]:
    """The ``data:`` payloads of a well-formed LF-framed event stream (test-side, simple)."""
    return [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]


def scrape(port: int) -> dict[str, float]:
    """GET /metrics; every line must be a HELP, a TYPE or a well-formed sample."""
    client = H11Client(connect(port))
    client.send(b"GET", b"/metrics")
    reply = client.read_reply()
    assert reply.status == 200
    assert reply.headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for line in reply.body.decode().splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        m = _SAMPLE.fullmatch(line)
        assert m, line
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


class EventStream:
    """A raw-socket SSE client: sends a GET, then reads the chunked body, parsing events with
    the oracle parser (comments and ``retry:`` lines dispatch nothing)."""

    def __init__(self, port: int, path: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                 timeout: float = 10, method: bytes = b"GET", body: bytes = b"") -> None:
        from .sse_parser import SSEParser  # (no cycle at import time)

        self.sock = connect(port, timeout=timeout)
        given = headers or []
        if not any(n.lower() == b"host" for n, _ in given):
            given = [(b"host", b"127.0.0.1"), *given]
        if body:
            given = [*given, (b"content-type", b"application/json"),
                     (b"content-length", b"%d" % len(body))]
        hdrs = b"".join(n + b": " + v + b"\r\n" for n, v in given)
        self.sock.sendall(method + b" " + path + b" HTTP/1.1\r\n" + hdrs + b"\r\n" + body)
        raw = recv_until(self.sock, lambda got: b"\r\n\r\n" in got)
        self.head, _, self._buffer = raw.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1])
        self.parser = SSEParser()
        self.payload = b""  # everything received so far, chunk framing removed
        self.received = len(self._buffer)  # body bytes received so far, as they came
        self.events: list[Any] = []
        self.ended = False  # the last chunk came: a clean end
        self._dechunk()

    def _dechunk(self) -> None:
        while True:
            eol = self._buffer.find(b"\r\n")
            if eol < 0:
                return
            size = int(self._buffer[:eol], 16)
            if len(self._buffer) < eol + 2 + size + 2:
                return
            if size == 0:
                self.ended = True
                return
            piece = self._buffer[eol + 2:eol + 2 + size]
            self._buffer = self._buffer[eol + 4 + size:]
            self.payload += piece
            self.events += self.parser.feed(piece)

    def read(self, events: int = 0, until: Callable[[EventStream], bool] | None = None) -> None:
        """Read until ``events`` events arrived in all (or ``until(self)`` holds), or the end;
        a cut connection raises."""
        while (not self.ended and len(self.events) < events) or (until and not until(self)):
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the stream was cut")
            self._buffer += data
            self.received += len(data)
            self._dechunk()
            if self.ended:
                return


def publish(port: int, channel: str, data: Any, event: str | None = None,
            headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    client = H11Client(connect(port))
    doc: dict[str, Any] = {"data": data}
    if event is not None:
        doc["event"] = event
    client.send(b"POST", b"/events/" + channel.encode(), json.dumps(doc).encode(),
                [(b"content-type", b"application/json"), *(headers or [])])
    reply = client.read_reply()
    client.sock.close()
    return reply
