"""The fan-out benchmark's parsing and statistics (bench/fanout.py), without any load."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.fanout import (
    TS_LEN,
    Hub,
    HubMissing,
    Subscriber,
    Tally,
    count_redis_clients,
    event_data,
    merge_rounds,
    parse_response,
    percentiles,
    probe,
    round_notes,
    row_notes,
    scan,
    split_by_windows,
    table,
)
from bench.procs import Proc

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


def _stream(sent: list[float]) -> bytes:
    """What the relay writes: chunked, a retry line, heartbeats, ids and event names."""
    out = _chunk(b"retry: 3000\n\n") + _chunk(b": heartbeat\n")
    for n, t in enumerate(sent):
        out += _chunk(b"id: %d\nevent: tick\ndata: " % n + event_data(200, t) + b"\n\n")
    return out


def _feed(pieces: list[bytes]) -> tuple[Tally, int]:
    loop = asyncio.new_event_loop()
    try:
        tally = Tally()
        ready: asyncio.Future[int] = loop.create_future()
        sub = Subscriber(b"", 0, tally, ready)
        for piece in pieces:
            sub.data_received(piece)
        return tally, ready.result()
    finally:
        loop.close()


def test_event_data_starts_with_the_send_time() -> None:
    data = event_data(200, 1796168307.25)
    assert len(data) == 200 and data.startswith(b"1796168307.250000 ")
    assert len(b"%.6f" % time.time()) == TS_LEN
    assert b"d" not in data[TS_LEN:]  # scan() keeps no tail after a whole event


def test_scan_counts_events_and_latencies_and_ignores_the_rest() -> None:
    now = time.time()
    tally = Tally()
    buf = _stream([now - 0.010, now - 0.002])
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


def test_subscriber_counts_every_event_whatever_the_read_boundaries() -> None:
    sent = [time.time() - 0.001 * k for k in range(5)]
    stream = HEAD + _stream(sent)
    for cut in range(1, len(stream)):  # every split into two reads
        tally, status = _feed([stream[:cut], stream[cut:]])
        assert status == 200 and tally.received == 5 and tally.bad == 0, cut
    tally, _ = _feed([stream[i:i + 1] for i in range(len(stream))])  # byte by byte
    assert tally.received == 5 and tally.subscribed == 1 and tally.live == [1]


def test_subscriber_reports_a_refusal() -> None:
    tally, status = _feed([b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"])
    assert status == 404 and tally.subscribed == 0


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


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentiles(values, (50, 99, 100)) == [51.0, 100.0, 100.0]
    assert percentiles([], (50,)) == [None]


def test_f_stall_splits_tokens_by_the_window_they_were_read_in() -> None:
    windows = [(10.0, 12.0), (14.0, 16.0)]  # publishing; quiet until the next (the last: 2 s)
    at = [9.0, 10.0, 12.5, 13.0, 13.9, 14.0, 16.9, 17.0, 17.9, 18.0]
    latency = [float(i) for i in range(len(at))]
    on, off = split_by_windows(at, latency, windows, drain=1.0)
    assert on == [1.0, 2.0, 5.0, 6.0]  # in a window, or within its drain
    assert off == [3.0, 4.0, 7.0, 8.0]  # the ramp (9.0) and after the last quiet (18.0): neither
    assert split_by_windows(at, latency, [], 1.0) == ([], [])


def test_redis_client_count_leaves_out_redis_cli() -> None:
    text = ("id=3 addr=127.0.0.1:1 fd=8 name= flags=P cmd=subscribe\n"
            "id=4 addr=127.0.0.1:2 fd=9 name= flags=N cmd=publish\n"
            "id=5 addr=127.0.0.1:3 fd=11 name= flags=N cmd=client|list\n")
    assert count_redis_clients(text) == 2


def _hub(name: str) -> Hub:
    return Hub(name, proc=None, port=8080, cpus={0}, load_cpus={1})  # type: ignore[arg-type]


def test_requests_carry_a_loopback_host_and_each_hubs_paths() -> None:
    relay, nchan = _hub("relay"), _hub("nchan")
    assert relay.sub_request("f1").startswith(b"GET /events/f1 HTTP/1.1\r\nHost: 127.0.0.1:8080")
    assert b"Accept: text/event-stream" in nchan.sub_request("f1")  # nchan: 403 without it
    assert nchan.sub_request("f1").startswith(b"GET /sub/f1 ")
    data = event_data(30, 1.5e9)
    post = relay.pub_request("c7", data)
    head, body = post.split(b"\r\n\r\n")
    assert head.startswith(b"POST /events/c7 ") and b"application/json" in head
    assert body == b'{"data": "' + data + b'"}' and b"Content-Length: %d" % len(body) in head
    assert nchan.pub_request("c7", data).endswith(b"\r\n\r\n" + data)


def test_table_has_ratios_missing_hubs_and_notes() -> None:
    def row(hub: str, cpu: float) -> dict[str, Any]:
        return {"hub": hub, "scenario": "F1", "cpu_s_per_1m": cpu, "lost": 0}

    doc = {"meta": {"started": "t", "git": "g", "cpus": 2, "python": "3", "notes": ["n1"],
                    "hubs": ["relay", "nchan", "starlette"], "scenarios": ["F1"],
                    "missing": {"starlette": "not installed"},
                    "args": {"rate": 30000.0, "size": 200, "duration": 5.0,
                             "subscribers": 2000, "channels": 200, "per_channel": 10,
                             "streams": 200}},
            "rows": [row("relay", 8.0), row("nchan", 16.0),
                     {"hub": "starlette", "scenario": "F1", "missing": "not installed"}]}
    md = table(doc)
    assert "| F1 | hub CPU s per 1M deliveries | 8.00 | 16.00 | MISSING | 0.50x |" in md
    assert "- MISSING starlette: not installed" in md and "- n1" in md


def test_the_nchan_config_template_is_complete(tmp_path: Path) -> None:
    from bench.fanout import nchan_conf

    text = nchan_conf(4321, tmp_path).read_text()
    assert "{" + "PORT}" not in text and "listen 127.0.0.1:4321" in text
    assert "ngx_nchan_module.so" in text and "worker_processes 1;" in text


@pytest.mark.parametrize("name", ["relay", "nchan", "starlette"])
def test_every_hub_name_starts_a_known_command(name: str, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    import bench.fanout as fanout

    seen: list[list[str]] = []

    class FakeProc:
        def __init__(self, argv: list[str], cpus: set[int], log: Path) -> None:
            seen.append(argv)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(fanout, "Proc", FakeProc)
    monkeypatch.setattr(fanout, "_wait_ready", lambda *a: None)
    monkeypatch.setattr(fanout, "probe", lambda hub: None)
    hub = fanout.start_hub(name, ({0}, {1}), tmp_path)
    assert hub.cpus == {0} and hub.load_cpus == {1}
    main = seen[-1]
    if name == "relay":
        assert main[1:4] == ["-m", "relay", "serve"] and "--redis" not in main
    elif name == "nchan":
        assert main[0] == "nginx" and hub.redis is None
    else:
        assert "bench.peers.starlette_channels" in main and seen[0][0] == "redis-server"
    assert isinstance(hub, Hub) and not isinstance(hub.proc, Proc)


def test_a_relay_without_channel_endpoints_is_missing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        hub = _hub("relay")
        hub.port = server.getsockname()[1]
        with pytest.raises(HubMissing, match="404"):
            probe(hub)
        thread.join(5)


def test_row_notes_flag_a_busy_load_side_a_missed_rate_and_losses() -> None:
    row = {"hub": "nchan", "scenario": "F2", "load_core_busy_pct": 97.0, "publish_rate": 2000.0,
           "publish_rate_target": 3000.0, "lost": 12, "short_subscribers": 3,
           "short_events": 12, "subscribers": 10, "subscribers_requested": 10}
    notes = " ".join(row_notes(row))
    assert "97.0% busy" in notes and "2000.0/s of 3000/s" in notes and "12 events lost" in notes


def test_rounds_merge_into_medians_with_losses_summed_and_each_round_kept() -> None:
    def row(cpu: float, p99: float, lost: int) -> dict[str, Any]:
        return {"hub": "relay", "scenario": "F2", "cpu_s_per_1m": cpu, "latency_p99_ms": p99,
                "lost": lost, "subscribers": 10_000, "notes": "x"}

    merged = merge_rounds([row(18.0, 4.0, 0), row(30.0, 9.0, 2), row(17.0, 3.0, 1)])
    assert merged["cpu_s_per_1m"] == 18.0 and merged["latency_p99_ms"] == 4.0
    assert merged["lost"] == 3 and merged["subscribers"] == 10_000 and merged["notes"] == "x"
    assert [r["cpu_s_per_1m"] for r in merged["rounds"]] == [18.0, 30.0, 17.0]
    failed = {"hub": "relay", "scenario": "F2", "failed": "boom"}
    assert merge_rounds([row(1, 1, 0), failed]) is failed
    nchan = {**merge_rounds([row(9.0, 2.0, 0), row(10.0, 4.0, 0), row(20.0, 8.0, 0)]),
             "hub": "nchan"}
    notes = round_notes([merged, nchan])
    assert notes == ["F2 relay / nchan by round (the table: medians of 3 rounds): "
                     "CPU 2.00x, 3.00x, 0.85x; p99 2.00x, 2.25x, 0.38x"]
