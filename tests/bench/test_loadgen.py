"""bench/loadgen.py: its flags and printed summary (its streams: tests/bench/test_bench.py)."""

from __future__ import annotations

from bench.loadgen import Stats, parse_args, summary, summary_text


def test_flags_default_to_a_looping_uvloop_run() -> None:
    args = parse_args(["http://127.0.0.1:8080", "--header", "authorization: Bearer k"])
    assert args.loop == "uvloop" and not args.once and args.header == ["authorization: Bearer k"]


def test_the_summary_prints_latency_only_when_events_carried_send_times() -> None:
    stats = Stats(started=2, completed=2, events=4)
    stats.ttfe.extend([0.001, 0.002])
    text = summary_text(summary(stats, 2.0))
    assert text.splitlines()[0] == "streams 2/2 completed, 0 errors "
    assert "events 4 in 2.0 s = 2 events/s" in text and "upstream->client" not in text
    stats.latency.append(0.0005)
    assert "upstream->client latency ms: p50 0.5 p99 0.5 max 0.5" in summary_text(
        summary(stats, 2.0))
