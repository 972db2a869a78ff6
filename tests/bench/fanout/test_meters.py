"""bench/fanout/meters.py: the cores' busy and steal ticks, and what a window used."""

from __future__ import annotations

from bench.fanout.meters import Meters, busy_pct, parse_core_ticks

STAT = """cpu  300 0 100 600 0 0 50 10 0 0
cpu0 200 0 50 200 20 0 40 10 0 0
cpu1 100 0 50 400 0 0 10 0 0 0
intr 12345
"""


def test_core_ticks_count_softirq_as_busy_and_steal_apart() -> None:
    # cpu0: total 520, idle 200 + iowait 20 + steal 10 are not busy.
    assert parse_core_ticks(STAT, {0}) == (290, 520, 10)
    assert parse_core_ticks(STAT, {0, 1}) == (290 + 160, 520 + 560, 10)
    assert parse_core_ticks(STAT, {7}) == (0, 0, 0)


def test_busy_percent_between_two_readings() -> None:
    assert busy_pct((100, 1000, 5), (150, 1100, 15)) == 50.0
    assert busy_pct((100, 1000, 5), (150, 1100, 15), 2) == 10.0
    assert busy_pct((1, 1, 1), (1, 1, 1)) is None


def test_usage_since_an_earlier_reading() -> None:
    before = Meters(1.0, 0.5, 2.0, (0, 100, 0), (0, 100, 0))
    after = Meters(1.5, 0.5, 2.25, (40, 200, 2), (80, 200, 0))
    used = after.since(before)
    assert (used.hub_cpu, used.redis_cpu, used.own_cpu) == (0.5, 0.0, 0.25)
    assert (used.hub_core_busy_pct, used.load_core_busy_pct, used.steal_pct) == (40.0, 80.0, 1.0)
