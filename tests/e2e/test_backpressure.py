"""A slow reader costs bounded memory and does not slow anyone else (relay as a subprocess)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from relay.config import KIB, MIB

from ..support import (
    OPEN_SOCKETS,
    H11Client,
    chat_body,
    connect,
    wait_until,
)
from ..support.processes import rss_bytes, spawn
from ..support.tls import make_tls

# The documented bound (README, "Backpressure"): per stream, the client write buffer's high-water
# mark (64 KiB) plus one upstream read (uvloop reads at most 256 KiB) in user space. The
# assertion allows allocator slack on top; without backpressure the relay would hold ~16 MiB.
RSS_GROWTH_BOUND = 4 * MIB
SLOW_TOKENS = 80_000  # ~16 MiB of chunk events
FAST_TOKENS = 20_000  # ~4 MiB


def settled_rss(pid: int, timeout: float = 3.0) -> int:
    """The process's RSS once two samples 50 ms apart agree (or at the deadline)."""
    deadline = time.monotonic() + timeout
    previous = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = rss_bytes(pid)
        if current == previous:
            return current
        previous = current
    return previous


def fast_stream(port: int) -> tuple[float, int]:
    """Fetch a FAST_TOKENS stream as fast as possible: (seconds, bytes)."""
    sock = connect(port, timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 * MIB)
    started = time.monotonic()
    H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body(FAST_TOKENS))
    total = 0
    tail = b""
    while not tail.endswith(b"0\r\n\r\n"):
        data = sock.recv(1 << 20)
        assert data, "fast stream cut"
        total += len(data)
        tail = (tail + data)[-16:]
    elapsed = time.monotonic() - started
    sock.close()
    return elapsed, total


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_slow_reader_bounded_memory_and_fast_stream_unaffected(scheme: str,
                                                               tmp_path: Path) -> None:
    mock_args, relay_args = ["mock", "--port", "0"], ["serve", "--port", "0"]
    if scheme == "https":  # TLS buffers on its own: its read limits must hold too
        tls = make_tls(tmp_path)
        mock_args += ["--tls-cert", str(tls.cert_pem), "--tls-key", str(tls.key_pem)]
        relay_args += ["--upstream-ca", str(tls.ca_pem)]
    with spawn(*mock_args) as (_mock, mock_port, _), \
         spawn(*relay_args, "--upstream", f"{scheme}://127.0.0.1:{mock_port}") as (
             relay, port, _):
        baseline_time, fast_bytes = fast_stream(port)  # also warms the relay up
        assert fast_bytes > 3 * MIB
        rss_before = settled_rss(relay.pid)

        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connect
        slow.connect(("127.0.0.1", port))
        H11Client(slow).send(b"POST", b"/v1/chat/completions", chat_body(SLOW_TOKENS))

        result: dict[str, tuple[float, int]] = {}
        fast = threading.Thread(target=lambda: result.setdefault("fast", fast_stream(port)))
        received, peak = 0, rss_before
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < 5.0:
            if elapsed > 1.0 and not fast.is_alive() and "fast" not in result:
                fast.start()
            budget = int(64 * 1024 * elapsed) - received  # read at 64 KB/s
            while budget > 0:
                data = slow.recv(min(budget, 16 * 1024))
                assert data
                received += len(data)
                budget -= len(data)
            peak = max(peak, rss_bytes(relay.pid))
            time.sleep(0.05)
        fast.join(30)
        slow.close()

    growth = peak - rss_before
    during_time, _ = result["fast"]
    print(f"\n{scheme}: slow reader got {received // 1024} KiB in 5 s;",
          f"relay RSS {rss_before / MIB:.1f} MiB -> peak {peak / MIB:.1f} MiB",
          f"(+{growth // 1024} KiB); fast 4 MiB stream {baseline_time * 1000:.0f} ms alone,",
          f"{during_time * 1000:.0f} ms beside the slow one")
    assert received < 400 * 1024  # the slow reader really was slow (sanity)
    assert growth < RSS_GROWTH_BOUND
    assert during_time < max(3 * baseline_time, baseline_time + 1.0)


def _tcp_queues(port: int, side: int) -> tuple[int, int]:
    """Bytes queued in the kernel (/proc/net/tcp) on the sockets whose local (``side`` 1) or
    remote (``side`` 2) port is ``port``: (tx_queue, rx_queue), not yet read by the other end
    or by the owner."""
    tx = rx = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[side].split(":")[1], 16) == port:
                queued_tx, queued_rx = fields[4].split(":")
                tx, rx = tx + int(queued_tx, 16), rx + int(queued_rx, 16)
    return tx, rx


def _relay_send_queue(port: int) -> int:
    """Sent by the relay to its clients (on its listening port) and not yet read by them."""
    return _tcp_queues(port, 1)[0]


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

        # (a deadline, not a wait: 50 streams filling up under coverage took over 30 s with
        # six other processes busy on two cores, in a fresh clone's make test)
        assert wait_until(settled, 90, interval=0.1)
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


def _flood(port: int, request: bytes, count: int, seconds: float = 4.0) -> int:
    """Pipeline ``count`` copies of ``request`` and read nothing; returns the bytes the relay
    took before it stopped reading (its kernel buffers full)."""
    sock = socket.socket()
    OPEN_SOCKETS.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)  # read nothing, hold little
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    data = memoryview(request * count)
    sent, deadline = 0, time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)  # the relay stopped reading: poll until the deadline
    return sent


@pytest.mark.parametrize(("path", "count"), [(b"/healthz", 100_000), (b"/metrics", 20_000)])
def test_a_pipelining_flood_costs_one_write_buffer(path: bytes, count: int) -> None:
    """A client pipelines thousands of requests for local answers and never reads: the relay
    takes the next request only once the previous answers drained (as nginx and Envoy do), so
    its memory does not grow with the number of requests (it grew by 24 MiB for 100k /healthz
    and 100 MiB for 20k /metrics when every answer was built and queued)."""
    with spawn("serve", "--port", "0", "--access-log", "off") as (relay, port, _):
        probe = H11Client(connect(port))
        probe.send(b"GET", path)  # warm the path up once
        assert probe.read_reply().status == 200
        before = settled_rss(relay.pid)
        request = b"GET " + path + b" HTTP/1.1\r\nhost: localhost\r\n\r\n"
        sent = _flood(port, request, count)
        growth = settled_rss(relay.pid) - before
        unread = _tcp_queues(port, 1)[1] + _tcp_queues(port, 2)[0]  # relay rx + clients' tx
        assert unread > sent // 2  # most of the flood still waits in the kernel: not read
        assert growth < 4 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
        probe.next_cycle()  # and the relay still serves everyone else
        probe.send(b"GET", b"/healthz")
        assert probe.read_reply().status == 200
