"""bench/fanout/figures.py: a window's row from its counts, and F-stall's split by window."""

from __future__ import annotations

from array import array

import pytest

from bench.fanout.figures import Window, shortfall, split_by_windows, window_row
from bench.fanout.load import Load, Published
from bench.fanout.meters import Usage
from bench.fanout.wire import Tally


def test_f_stall_splits_tokens_by_the_window_they_were_read_in() -> None:
    windows = [(10.0, 12.0), (14.0, 16.0)]  # publishing; quiet until the next (the last: 2 s)
    at = [9.0, 10.0, 12.5, 13.0, 13.9, 14.0, 16.9, 17.0, 17.9, 18.0]
    latency = [float(i) for i in range(len(at))]
    on, off = split_by_windows(at, latency, windows, drain=1.0)
    assert on == [1.0, 2.0, 5.0, 6.0]  # in a window, or within its drain
    assert off == [3.0, 4.0, 7.0, 8.0]  # the ramp (9.0) and after the last quiet (18.0): neither
    assert split_by_windows(at, latency, [], 1.0) == ([], [])


def test_shortfall_counts_against_the_best_served_subscriber_of_each_channel() -> None:
    received = [(0, 10), (0, 7), (1, 3), (1, 3), (0, 10)]
    assert shortfall(received, 2) == [3]
    assert shortfall([], 3) == []


def test_a_window_row_has_deliveries_latencies_and_costs() -> None:
    tally = Tally(channels=2, received=1000, subscribed=20, drops=1, bad=0,
                  latency=array("d", [0.001 * k for k in range(1, 101)]))
    pub = Published(sent=110, ok=100, errors=10, expected=1002)
    used = Usage(hub_cpu=0.02, redis_cpu=0.0, own_cpu=0.5, hub_core_busy_pct=40.0,
                 load_core_busy_pct=50.0, steal_pct=0.5)
    window = Window(connect_s=0.5, seconds=2.0, publish_s=1.0, rss0=10 * 2**20,
                    rss1=10 * 2**20 + 20 * 4096, redis_clients=None, with_redis=False,
                    used=used)
    row = window_row(Load(2, 10, 1000.0, 1.0, 200, 1.0), tally, [2], pub, window)
    assert row["publish_rate"] == 100.0 and row["publish_rate_target"] == 100.0
    assert row["lost"] == 2 and row["short_subscribers"] == 1 and row["short_events"] == 2
    assert row["deliveries_per_s"] == 500 and row["cpu_s_per_1m"] == 20.0
    assert row["latency_p50_ms"] == pytest.approx(51.0) and row["latency_max_ms"] == 100.0
    assert row["rss_per_sub_kib"] == 4.0 and row["redis_cpu_s_per_1m"] is None
    assert row["loadgen_cpu_pct"] == 25.0 and row["steal_pct"] == 0.5
