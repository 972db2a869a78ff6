"""Micro-benchmark: the body path per event, h11 against relay.http1 (readers, passthrough).

    .venv/bin/python -m bench.micro_framing [--events 200000]

Prints microseconds per event for parsing a chunked upstream body (one ~170-byte event per
chunk, fed one chunk per read), for framing one event as a chunk for the client, and for the
pass-through scan that replaces both when both hops are chunked (one event per read, and 100).
"""

from __future__ import annotations

import argparse
import time

import h11

from relay.http1.passthrough import ChunkedPassthrough
from relay.http1.readers import ChunkedReader

EVENT = (b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1700000000,'
         b'"model":"m","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}'
         b"\n\n")


def h11_parse(reads: list[bytes]) -> float:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Response)
    start = time.perf_counter()
    for data in reads:
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
    return time.perf_counter() - start


def lean_parse(reads: list[bytes]) -> float:
    decoder = ChunkedReader()
    start = time.perf_counter()
    for data in reads:
        decoder.feed(data)
    return time.perf_counter() - start


def passthrough_scan(reads: list[bytes]) -> float:
    scanner = ChunkedPassthrough()
    start = time.perf_counter()
    for data in reads:
        scanner.feed(data)
    return time.perf_counter() - start


def h11_frame(n: int) -> float:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    conn.next_event()
    conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
    out: list[bytes] = []
    sink = out.extend
    start = time.perf_counter()
    for _ in range(n):
        sink(conn.send_with_data_passthrough(h11.Data(data=EVENT)) or ())
        if len(out) > 3000:
            out.clear()
    return time.perf_counter() - start


def lean_frame(n: int) -> float:
    out: list[bytes] = []
    sink = out.extend
    start = time.perf_counter()
    for _ in range(n):
        sink((b"%x\r\n" % len(EVENT), EVENT, b"\r\n"))
        if len(out) > 3000:
            out.clear()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    n = ap.parse_args().events
    reads = [b"%x\r\n%s\r\n" % (len(EVENT), EVENT)] * n
    batched = [reads[0] * 100] * (n // 100)  # back-to-back: 100 events per read
    rows = [
        ("parse chunked upstream body", h11_parse(reads), lean_parse(reads)),
        ("frame one chunk for the client", h11_frame(n), lean_frame(n)),
        ("both: h11 vs pass-through scan", h11_parse(reads) + h11_frame(n),
         passthrough_scan(reads)),
        ("same, 100 events per read", h11_parse(batched) + h11_frame(n),
         passthrough_scan(batched)),
    ]
    print(f"{n} events of {len(EVENT)} bytes, one per read; microseconds per event")
    print(f"{'step':34} {'h11':>8} {'relay':>8} {'ratio':>6}")
    for name, slow, fast in rows:
        print(f"{name:34} {slow / n * 1e6:8.2f} {fast / n * 1e6:8.2f} {slow / fast:6.1f}x")


if __name__ == "__main__":
    main()
