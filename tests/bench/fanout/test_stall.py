"""bench/fanout/stall.py: F-stall's row from the LLM streams' tokens on each side."""

from __future__ import annotations

from bench.fanout.stall import WINDOW_S, stall_row


def test_the_stall_row_compares_the_p99_of_both_sides() -> None:
    windows = [(10.0, 12.0), (14.0, 16.0)]
    side = {"at": [10.5, 11.0, 12.5, 13.5, 14.5, 17.5], "latency": [0.004, 0.005, 0.003,
                                                                    0.001, 0.006, 0.002],
            "errors": 0, "error_kinds": {}}
    row = stall_row({"lost": 0}, side, windows, 200)
    assert row["lost"] == 0 and row["streams"] == 200 and row["stall_window_s"] == WINDOW_S
    assert row["stall_events_publishing"] == 4 and row["stall_events_quiet"] == 2
    assert row["stall_p99_fanout_ms"] == 6.0 and row["stall_p99_alone_ms"] == 2.0
    assert row["stall_p99_delta_ms"] == 4.0


def test_no_token_on_a_side_gives_no_difference() -> None:
    side = {"at": [], "latency": [], "errors": 1, "error_kinds": {"x": 1}}
    row = stall_row({}, side, [(1.0, 2.0)], 1)
    assert row["stall_p99_delta_ms"] is None and row["stall_errors"] == 1
