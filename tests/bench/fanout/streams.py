"""Streams as the hubs write them, for the fan-out tests."""

from __future__ import annotations

from bench.fanout.wire import event_data

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


def stream(sent: list[float]) -> bytes:
    """What the relay writes: chunked, a retry line, heartbeats, ids and event names."""
    out = chunk(b"retry: 3000\n\n") + chunk(b": heartbeat\n")
    for n, t in enumerate(sent):
        out += chunk(b"id: %d\nevent: tick\ndata: " % n + event_data(200, t) + b"\n\n")
    return out
