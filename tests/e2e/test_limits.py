"""Connection caps, the upstream queue, the send timeout, socket buffers and memory under 50
clients that stopped reading: over real sockets (the last one with real processes)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from relay.config import Limits, Timeouts

from ..conftest import MockServer, RelayFactory, ScriptedFactory
from ..support import (
    OPEN_SOCKETS,
    H11Client,
    LoopThread,
    UpstreamConn,
    chat_body,
    connect,
    read_until_close,
    wait_until,
)
from ..support.processes import rss_bytes, spawn

KIB, MIB = 1024, 1024 * 1024


def test_over_the_connection_cap_gets_503_with_retry_after(mock_server: MockServer,
                                                          make_relay: RelayFactory,
                                                          lt: LoopThread) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_connections=2))
    held = [connect(relay.port), connect(relay.port)]
    assert wait_until(lambda: lt.call(lambda: len(relay.listener.connections)) == 2)
    extra = connect(relay.port, timeout=5)
    H11Client(extra).send(b"POST", b"/v1/chat/completions", chat_body(2))
    reply = read_until_close(extra)
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 1\r\n" in reply.lower() and b"connection limit" in reply
    assert mock_server.mock.requests == 0
    held.pop().close()  # room again: the next connection is served
    assert wait_until(lambda: lt.call(lambda: len(relay.listener.connections)) == 1)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    assert client.read_reply().status == 200


def test_upstream_cap_queues_then_503(scripted: ScriptedFactory, make_relay: RelayFactory,
                                      lt: LoopThread) -> None:
    """max_upstream=1: a second request waits for the one connection; it is served when that
    connection comes back to the pool, or answered 503 when the queue timeout passes first."""
    release = threading.Event()
    seen: list[bytes] = []

    async def script(conn: UpstreamConn) -> None:
        while await conn.read_request():
            seen.append(conn.request_line)
            if conn.request_line.startswith(b"POST /v1/hold"):
                await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
            conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    up = scripted(script)
    relay = make_relay(up.url, limits=Limits(max_upstream=1), timeouts=Timeouts(queue=0.5))
    holder = H11Client(connect(relay.port))
    holder.send(b"POST", b"/v1/hold", b"{}")
    assert wait_until(lambda: len(seen) == 1)

    late = H11Client(connect(relay.port))  # queues, and times out
    late.send(b"POST", b"/v1/late", b"{}")
    reply = late.read_reply()
    assert reply.status == 503 and reply.headers[b"retry-after"] == b"1"
    assert b"upstream_busy" in reply.body

    queued = H11Client(connect(relay.port))  # queues, and is served once the holder is done
    queued.send(b"POST", b"/v1/queued", b"{}")
    assert wait_until(lambda: lt.call(lambda: len(relay.pool._waiters)) == 1)
    release.set()
    assert holder.read_reply().status == 200
    assert queued.read_reply().status == 200
    assert [line.split()[1] for line in seen] == [b"/v1/hold", b"/v1/queued"]
    assert len(up.connections) == 1  # the queued request reused the one connection


def test_client_that_stops_reading_is_cut_after_send_timeout(scripted: ScriptedFactory,
                                                             make_relay: RelayFactory) -> None:
    async def endless(conn: UpstreamConn) -> None:
        await conn.read_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                          b"transfer-encoding: chunked\r\n\r\n")
        event = b"data: " + b"x" * 1000 + b"\n\n"
        framed = b"%x\r\n%s\r\n" % (len(event), event)
        try:
            while True:
                conn.writer.write(framed * 16)
                await conn.writer.drain()
        except ConnectionError:
            conn.closed.set()  # the relay closed (reset) the upstream side

    up = scripted(endless)
    relay = make_relay(up.url, timeouts=Timeouts(send=0.5), limits=Limits(socket_buffer=32 * KIB))
    sock = socket.socket()
    OPEN_SOCKETS.append(sock)  # closed by the harness whatever happens
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
    sock.connect(("127.0.0.1", relay.port))
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body(2))
    started = time.monotonic()
    assert wait_until(lambda: len(up.connections) == 1)
    # Never read: the relay pauses the upstream, then cuts both sides after 0.5 s of no progress.
    assert up.connections[0].closed.wait(10)
    assert time.monotonic() - started >= 0.5
    sock.settimeout(5)
    total = 0
    try:
        while data := sock.recv(1 << 20):
            total += len(data)
    except ConnectionResetError:
        pass  # cut with RST (abort): what the client sees is a broken, not a complete, stream
    assert 0 < total < 4 * MIB


def test_socket_buffer_caps_the_relay_sockets(mock_server: MockServer, make_relay: RelayFactory,
                                              lt: LoopThread) -> None:
    relay = make_relay(mock_server.url, limits=Limits(socket_buffer=32 * KIB))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    client.read_reply()

    def sizes() -> list[tuple[int, int]]:
        socks = [c.transport.get_extra_info("socket") for c in relay.listener.connections]
        return [(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                 s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) for s in socks]

    def upstream_sndbuf() -> list[int]:
        return [c.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET,
                                                                 socket.SO_SNDBUF)
                for c in relay.pool._idle]

    assert lt.call(sizes) == [(64 * KIB, 64 * KIB)]  # Linux doubles the value set
    assert lt.call(upstream_sndbuf) == [64 * KIB]


def _relay_send_queue(port: int) -> int:
    """Bytes queued in the kernel on the relay's sockets listening-port side (/proc/net/tcp
    tx_queue), i.e. sent by the relay to its clients and not yet read by them."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                total += int(fields[4].split(":")[0], 16)
    return total


def test_50_clients_that_stopped_reading_keep_memory_bounded() -> None:
    """50 clients ask for ~16 MiB streams each and read nothing while the mock writes as fast as
    it can. Stated bound per stream: in the relay, the client high-water mark (64 KiB) plus one
    upstream read (SO_RCVBUF 64 KiB, doubled by Linux: <= 128 KiB) = 192 KiB, so 9.4 MiB for
    50; in the kernel, --socket-buffer 64 KiB per client socket (doubled: 128 KiB)."""
    clients = 50
    with spawn("mock", "--port", "0") as (_mock, mock_port, _), \
         spawn("serve", "--port", "0", "--upstream", f"http://127.0.0.1:{mock_port}",
               "--socket-buffer", str(64 * KIB), "--send-timeout", "120") as (relay, port, _):
        warm = H11Client(connect(port))
        warm.send(b"POST", b"/v1/chat/completions", chat_body(2000))
        warm.read_reply()
        rss_before = rss_bytes(relay.pid)
        socks = []
        for _ in range(clients):
            sock = socket.socket()
            OPEN_SOCKETS.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
            sock.connect(("127.0.0.1", port))
            H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body(80_000))
            socks.append(sock)
        samples: list[int] = []

        def settled() -> bool:  # the send queues stop growing once every stream is paused
            samples.append(_relay_send_queue(port))
            return len(samples) > 10 and samples[-1] == samples[-10] and samples[-1] > 0

        assert wait_until(settled, 30, interval=0.1)
        peak = max(rss_bytes(relay.pid) for _ in range(5))
        queued = samples[-1]
        for sock in socks:
            sock.close()
    growth = peak - rss_before
    print(f"\n50 stopped readers: relay RSS +{growth / MIB:.1f} MiB "
          f"({growth / clients / KIB:.0f} KiB/stream); kernel send queues "
          f"{queued / MIB:.1f} MiB ({queued / clients / KIB:.0f} KiB/stream)")
    assert growth < clients * 192 * KIB + 4 * MIB  # the stated bound plus allocator slack
    assert queued <= clients * 2 * 64 * KIB * 1.25  # SO_SNDBUF (doubled) plus TCP overhead
