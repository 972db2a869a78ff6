"""bench/fanout/report.py: the table, its ratios and cells, and the notes under it."""

from __future__ import annotations

from typing import Any

from bench.fanout.report import cell, row_notes, table


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


def test_row_notes_flag_a_busy_load_side_a_missed_rate_and_losses() -> None:
    row = {"hub": "nchan", "scenario": "F2", "load_core_busy_pct": 97.0, "publish_rate": 2000.0,
           "publish_rate_target": 3000.0, "lost": 12, "short_subscribers": 3,
           "short_events": 12, "subscribers": 10, "subscribers_requested": 10}
    notes = " ".join(row_notes(row))
    assert "97.0% busy" in notes and "2000.0/s of 3000/s" in notes and "12 events lost" in notes


def test_a_cell_says_why_a_hub_has_no_figure() -> None:
    assert cell(None, "lost") == "" and cell({"missing": "x"}, "lost") == "MISSING"
    assert cell({"failed": "boom"}, "lost") == "failed" and cell({"lost": 3}, "lost") == "3"
    assert cell({}, "lost") == "-"
