"""bench/fanout/wire.py: event data, the subscribers' scan and publish answers, as bytes."""

from __future__ import annotations

import time

import pytest

from bench.fanout.wire import TS_LEN, Tally, chunked_end, event_data, parse_response, scan

from .streams import stream


def test_event_data_starts_with_the_send_time() -> None:
    data = event_data(200, 1796168307.25)
    assert len(data) == 200 and data.startswith(b"1796168307.250000 ")
    assert len(b"%.6f" % time.time()) == TS_LEN
    assert b"d" not in data[TS_LEN:]  # scan() keeps no tail after a whole event


def test_scan_counts_events_and_latencies_and_ignores_the_rest() -> None:
    now = time.time()
    tally = Tally()
    buf = stream([now - 0.010, now - 0.002])
    keep = scan(buf, now, tally)
    assert tally.received == 2 and tally.bad == 0
    assert list(tally.latency) == pytest.approx([0.010, 0.002], abs=2e-6)  # %.6f stamps
    assert keep == len(buf)  # nothing worth keeping after whole events


def test_scan_crlf_events_and_a_bad_timestamp() -> None:
    # sse-starlette's separators are CRLF; nchan's ids look like "1796167693:0".
    now = time.time()
    tally = Tally()
    buf = (b"retry: 3000\r\n\r\nid: 1796167693:0\r\ndata: " + event_data(50, now) + b"\r\n\r\n"
           + b": ping - 2026-12-01\r\n\r\ndata: not-a-time-stamp-at-all\r\n\r\n")
    scan(buf, now, tally)
    assert tally.received == 2 and tally.bad == 1 and len(tally.latency) == 1


def test_parse_response_content_length_and_chunked() -> None:
    plain = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello"
    assert parse_response(plain) == (201, len(plain))
    assert parse_response(plain[:-1]) is None
    assert parse_response(plain + b"HTTP/1.1 200") == (201, len(plain))  # pipelined next
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n")
    assert parse_response(chunked) == (200, len(chunked))
    for cut in range(len(chunked)):
        assert parse_response(chunked[:cut]) is None
    assert parse_response(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, 27)


def test_a_chunked_body_ends_after_its_zero_chunk() -> None:
    body = b"3\r\nabc\r\n0\r\n\r\n"
    assert chunked_end(b"xx" + body, 2) == 2 + len(body)
    assert chunked_end(body[:-1], 0) is None and chunked_end(b"3\r\nab", 0) is None
