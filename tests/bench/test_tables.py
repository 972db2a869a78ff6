"""bench/tables.py: the cells of every bench's Markdown table."""

from __future__ import annotations

from bench.tables import fmt, md_row, ratio


def test_cells_format_figures_by_size_and_kind() -> None:
    assert [fmt(None), fmt(1.234), fmt(1234.5), fmt(12345), fmt("MISSING")] == \
        ["-", "1.23", "1,234", "12,345", "MISSING"]


def test_ratios_need_two_numbers_and_a_divisor() -> None:
    assert ratio(3.0, 2) == "1.50x"
    assert ratio(1.0, 0) == ratio(None, 1.0) == ratio(1.0, "-") == "-"


def test_a_row_is_cells_between_bars() -> None:
    assert md_row(["a", "b"]) == "| a | b |"
