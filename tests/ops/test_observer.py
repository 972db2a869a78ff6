"""/metrics after known traffic (exact values), the admin port, the access log, X-Request-ID."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

from relay.config import Limits, Timeouts

from ..conftest import MockServer, RelayFactory, ScriptedFactory
from ..support import (
    OPEN_SOCKETS,
    H11Client,
    UpstreamConn,
    chat_body,
    connect,
    free_port,
    read_until_close,
    scrape,
    wait_until,
)


def stream_wire_body(port: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                     target: bytes = b"/v1/chat/completions") -> bytes:
    """POST with Connection: close; the body bytes exactly as they came over the wire."""
    sock = connect(port)
    H11Client(sock).send(b"POST", target, body,
                         [(b"connection", b"close"), *(headers or [])])
    raw = read_until_close(sock)
    return raw.split(b"\r\n\r\n", 1)[1]


def test_metrics_exact_after_known_traffic(mock_server: MockServer,
                                           make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    port = relay.port
    wire = [stream_wire_body(port, chat_body(5)) for _ in range(3)]  # 8 events each
    client = H11Client(connect(port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(3, stream=False))
    json_body = client.read_reply().body
    client.next_cycle()
    client.send(b"GET", b"/nowhere")
    assert client.read_reply().status == 404
    limited = stream_wire_body(port, chat_body(5), [(b"x-mock-status", b"429")])
    assert b"mock error 429" in limited

    m = scrape(port)
    assert m['relay_requests_total{route="/v1",status="200"}'] == 4
    assert m['relay_requests_total{route="/v1",status="429"}'] == 1
    assert m['relay_requests_total{route="other",status="404"}'] == 1  # never the raw path
    assert m['relay_requests_ended_total{ended="complete"}'] == 6
    # Passed through unchanged: the client's wire body is the upstream body the relay read.
    assert m["relay_response_bytes_total"] == (sum(len(w) for w in wire) + len(json_body)
                                               + len(limited))
    assert m["relay_events_total"] == 3 * 8
    assert m["relay_request_bytes_total"] == 4 * len(chat_body(5)) + len(chat_body(3, False))
    assert m["relay_upstream_ttfb_seconds_count"] == 5
    assert m["relay_client_ttfb_seconds_count"] == 5
    assert m['relay_upstream_ttfb_seconds_bucket{le="+Inf"}'] == 5
    assert m["relay_client_connections"] == 2  # the keep-alive client above, and the scrape
    assert m["relay_active_streams"] == 0
    assert m["relay_client_disconnects_total"] == 0
    assert m["relay_upstream_connections_reused_total"] + m[
        "relay_upstream_connections_created_total"] == 5
    assert m["relay_upstream_connect_seconds_count"] == m[
        "relay_upstream_connections_created_total"]
    # Real durations, in seconds, finer than a millisecond (a loopback connect takes less than
    # one: uvloop's loop.time() counts whole milliseconds, and made these sums 0).
    assert m["relay_upstream_connect_seconds_sum"] > 0
    assert m["relay_upstream_ttfb_seconds_sum"] > 0
    assert m["relay_client_ttfb_seconds_sum"] > 0
    assert mock_server.mock.requests == 5  # /metrics and the 404 never went upstream
    # The loop-lag sampler runs in the real relay: its histogram fills while it serves.
    first = m["relay_event_loop_lag_seconds_count"]
    assert wait_until(lambda: scrape(port)["relay_event_loop_lag_seconds_count"] > first)


EVENT = b'data: {"n": 1}\n\n'


def test_metrics_failures_disconnects_heartbeats_and_pauses(scripted: ScriptedFactory,
                                                            make_relay: RelayFactory) -> None:
    big = b"data: " + b"x" * 199_992 + b"\n\n"
    cut_body = b"%x\r\n%s\r\n" % (len(EVENT), EVENT) * 2 + b"20\r\ndata: {\"torn"

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        path = c.request_line.split()[1]
        head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
                b"transfer-encoding: chunked\r\n\r\n")
        if path == b"/v1/big":
            c.write(head + b"%x\r\n%s\r\n" % (len(big), big))
            await asyncio.sleep(0.7)  # silence: heartbeats
            c.write(b"0\r\n\r\n")
        elif path == b"/v1/cut":
            c.write(head + cut_body)  # two events and a torn chunk, then the connection ends
        else:
            c.write(head)
            await c.watch_close()

    up = scripted(script)
    relay = make_relay(up.url, timeouts=Timeouts(heartbeat=0.2),
                       limits=Limits(socket_buffer=8 * 1024))
    sock = socket.socket()
    OPEN_SOCKETS.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # small, before connect
    sock.connect(("127.0.0.1", relay.port))
    H11Client(sock).send(b"POST", b"/v1/big", chat_body(), [(b"connection", b"close")])
    # Not reading yet: 200 KB cannot fit in the small socket buffers, so the relay's write
    # buffer passes its high-water mark and it pauses the upstream.
    assert wait_until(lambda: scrape(relay.port)["relay_backpressure_pauses_total"] >= 1)
    sock.settimeout(10)
    body = read_until_close(sock)
    beats = body.count(b": heartbeat\n")
    assert beats >= 1
    cut = stream_wire_body(relay.port, chat_body(), target=b"/v1/cut")
    assert b"upstream_closed" in cut
    leaver = connect(relay.port)
    H11Client(leaver).send(b"POST", b"/v1/leave", chat_body())
    assert wait_until(lambda: len(up.connections) == 3 and bool(up.connections[2].head))
    leaver.close()
    assert up.connections[2].closed.wait(2)

    m = scrape(relay.port)
    assert m["relay_heartbeats_total"] == beats
    assert m["relay_client_disconnects_total"] == 1
    assert m['relay_requests_ended_total{ended="client_disconnect"}'] == 1
    assert m['relay_requests_ended_total{ended="upstream_error"}'] == 1
    scrapes_before = m['relay_requests_total{route="/metrics",status="200"}']  # the polls
    assert m['relay_requests_ended_total{ended="complete"}'] == 1 + scrapes_before  # + big
    assert m['relay_upstream_failures_total{reason="upstream_closed"}'] == 1
    # bytes read from the upstream, the torn chunk included; events: blank lines read
    assert m["relay_response_bytes_total"] == len(big) + len(b"%x\r\n\r\n0\r\n\r\n" % len(big)
                                                           ) + len(cut_body)
    assert m["relay_events_total"] == 1 + 2
    assert m["relay_backpressure_pauses_total"] >= 1
    assert m["relay_active_streams"] == 0


def test_access_log_and_request_ids(scripted: ScriptedFactory, make_relay: RelayFactory,
                                    tmp_path: Path) -> None:
    seen: list[dict[bytes, bytes]] = []

    async def script(c: UpstreamConn) -> None:
        while await c.read_request():
            seen.append(dict(c.headers))
            c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: req_upstream\r\n"
                    b"\r\n{}")

    up = scripted(script)
    log = tmp_path / "access.log"
    relay = make_relay(up.url, access_log=str(log), api_key="sk-secret-key")
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/a", b"{}", [(b"x-request-id", b"client-id-1"),
                                          (b"authorization", b"Bearer sk-client-key")])
    reply = client.read_reply()
    assert reply.headers[b"x-request-id"] == b"client-id-1"
    assert reply.headers[b"x-upstream-request-id"] == b"req_upstream"
    client.next_cycle()
    client.send(b"POST", b"/v1/b?key=secret-in-query", b"{}",
                [(b"x-request-id", b"bad id with spaces")])
    generated = client.read_reply().headers[b"x-request-id"]
    assert re.fullmatch(rb"[0-9a-f]{24}", generated)
    assert [h[b"x-request-id"] for h in seen] == [b"client-id-1", generated]

    assert wait_until(lambda: log.exists() and log.read_text().count("\n") == 2)
    text = log.read_text()
    assert "sk-" not in text and "authorization" not in text.lower() and "secret" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert set(first) == {"time", "client", "method", "path", "status", "upstream_status",
                          "bytes_in", "bytes_out", "events", "ttfb_ms", "duration_ms", "ended",
                          "request_id"}
    assert first["method"] == "POST" and first["path"] == "/v1/a" and first["status"] == 200
    assert first["upstream_status"] == 200 and first["bytes_in"] == 2
    assert first["bytes_out"] == 2 and first["ended"] == "complete"
    assert first["request_id"] == "client-id-1" and first["client"].startswith("127.0.0.1:")
    assert second["path"] == "/v1/b" and second["request_id"] == generated.decode()


def test_errors_carry_the_request_id_and_are_logged(make_relay: RelayFactory,
                                                     tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    relay = make_relay(f"http://127.0.0.1:{free_port()}", access_log=str(log))  # refused
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(), [(b"x-request-id", b"r-42")])
    reply = client.read_reply()
    assert reply.status == 502 and reply.headers[b"x-request-id"] == b"r-42"
    assert wait_until(lambda: log.exists() and log.read_text().endswith("\n"))
    line = json.loads(log.read_text())
    assert line["status"] == 502 and line["ended"] == "upstream_error"
    assert line["request_id"] == "r-42" and line["upstream_status"] is None
    m = scrape(relay.port)
    assert m['relay_upstream_failures_total{reason="upstream_connect_failed"}'] == 1
