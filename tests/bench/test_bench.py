"""Smoke tests of the benchmark tools (their numbers are for bench/, never asserted here)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import uvloop

from bench.loadgen import run_once, run_slow_readers, summary
from bench.relay_cpu import load
from bench.report import table
from bench.resumable import RESUMABLE

from ..conftest import MockServer, RelayFactory


def test_loadgen_counts_events_and_latencies(mock_server: MockServer,
                                             make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    stats, wall = uvloop.run(run_once(f"http://127.0.0.1:{relay.port}", 20, 8, 5, 0.05, 30))
    s = summary(stats, wall)
    assert s["streams_completed"] == 20 and s["errors"] == 0
    assert s["events"] == 20 * 10  # role + 8 tokens + finish, per stream
    assert s["latency_ms"]["p50"] is not None and s["ttfe_ms"]["p50"] is not None
    assert len(stats.latency) == 200


def test_loadgen_reports_mid_stream_errors(mock_server: MockServer,
                                           make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)

    async def go() -> int:
        from bench.loadgen import Stats, request_bytes, run_stream

        stats = Stats()
        req = request_bytes(f"http://127.0.0.1:{relay.port}", 10, 0,
                            extra_headers={"x-mock-fail-after": "3"})
        await run_stream("127.0.0.1", relay.port, req, stats, asyncio.get_running_loop().time())
        return stats.error_kinds.get("error event", 0)

    assert uvloop.run(go()) == 1


def test_loadgen_counts_nothing_read_after_its_end(mock_server: MockServer,
                                                   make_relay: RelayFactory) -> None:
    # (What a run's end reads would time the loadgen's own teardown, not the relay.)
    relay = make_relay(mock_server.url)

    async def counted(until: float) -> tuple[int, int, int]:
        from bench.loadgen import Stats, request_bytes, run_stream

        stats, streams = Stats(until=until), []  # type: ignore[var-annotated]
        req = request_bytes(f"http://127.0.0.1:{relay.port}", 5, 0)
        with contextlib.suppress(TimeoutError):  # (nothing counted: not even its [DONE])
            await asyncio.wait_for(run_stream("127.0.0.1", relay.port, req, stats,
                                        asyncio.get_running_loop().time(), streams=streams), 2)
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        return stats.events, len(stats.latency), len(stats.at)

    assert uvloop.run(counted(float("inf"))) == (7, 7, 7)  # role + 5 tokens + finish
    assert uvloop.run(counted(time.time() - 1)) == (0, 0, 0)


def test_slow_readers_read_at_their_rate(mock_server: MockServer,
                                         make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    stats = uvloop.run(run_slow_readers(f"http://127.0.0.1:{relay.port}", 2, 20000, 2000, 2.0))
    # Two readers for 2 s at 2 KB/s, each allowed one first read of its small receive buffer;
    # the stream itself is ~4 MB, so an unthrottled reader would be far over this.
    assert 0 < stats.bytes < 2 * (8192 + 2000 * 2 * 1.5)


def test_report_table_has_medians_and_ratios() -> None:
    rows = [{"relay": r, "rep": k, "scenario": "C2000", "cpu_s_per_1m_events": v * k,
             "errors": 0} for r, v in (("relay", 20.0), ("nginx", 16.0), ("aiohttp", 40.0))
            for k in (1, 2, 3)]
    doc = {"meta": {"started": "t", "git": "g", "cpus": 2, "python": "3", "missing":
                    {"fastapi": "not installed"}}, "rows": rows}
    md = table(doc)
    assert "| C2000 | relay CPU s per 1M events | 40.00 | 32.00 | 80.00 | 1.25x | 0.50x |" in md
    assert "MISSING fastapi: not installed" in md


def test_the_resumable_bench_reads_whole_streams_both_ways(mock_server: MockServer,
                                                            make_relay: RelayFactory) -> None:
    """bench.resumable's load: each stream read to its last chunk, plain and resumable, with
    the event count the mock wrote (the figures come from the bench run, never from here)."""
    relay = make_relay(mock_server.url)
    sizes = [asyncio.run(load(relay.port, 3, 50, extra))[1] for extra in (b"", RESUMABLE)]
    assert sizes[0] > 3 * 50 * 100
    assert sizes[1] > sizes[0]  # the same streams, plus an id line per event


def test_host_jitter_finds_a_gap_in_its_clock_loop() -> None:
    from bench import host_jitter

    # A clock whose every 1,000th read jumps 5 ms, as if the CPU were taken away.
    reads = [0]

    def clock() -> float:
        reads[0] += 1
        return reads[0] * 1e-7 + (reads[0] // 1000) * 0.005

    found = host_jitter.gaps(0.02, 0.003, clock)
    assert found and all(abs(gap - 0.005) < 1e-6 for _, gap in found)


def test_a_relay_at_a_path_is_that_checkouts_relay(tmp_path: Path) -> None:
    """``relay@PATH`` runs the relay of another checkout (a tree before), beside this one."""
    from bench.relays import THIS_TREE, spec

    before = spec(f"relay@{THIS_TREE}")
    assert before.tree == THIS_TREE.resolve() and before.missing() is None
    assert not before.python and before.headers() == ()
    assert "not a checkout" in (spec(f"relay@{tmp_path}").missing() or "")
    assert spec("relay").tree is None and "/" not in before.slug
