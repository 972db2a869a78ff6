"""bench/stats.py: the percentiles every bench reports."""

from __future__ import annotations

from array import array

from bench.stats import ms, percentile, percentiles


def test_percentiles_are_nearest_rank_with_one_sort() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentiles(values, (50, 99, 100)) == [51.0, 100.0, 100.0]
    assert percentiles([], (50, 99)) == [None, None]


def test_one_percentile_of_an_array() -> None:
    assert percentile(array("d", [3.0, 1.0, 2.0]), 50) == 2.0
    assert percentile(array("d"), 99) is None


def test_ms_rounds_to_the_microsecond() -> None:
    assert ms(0.0012345) == 1.234 and ms(None) is None
