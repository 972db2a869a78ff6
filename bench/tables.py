"""Markdown table cells the bench reports share: a figure and a ratio of two figures."""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    """A cell: '-' for no figure, two decimals below 100, thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def ratio(ours: Any, theirs: Any) -> str:
    """``ours / theirs`` as '1.25x'; '-' when either is not a number or ``theirs`` is zero."""
    if not isinstance(ours, (int, float)) or not isinstance(theirs, (int, float)) or not theirs:
        return "-"
    return f"{ours / theirs:.2f}x"


def md_row(cells: list[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"
