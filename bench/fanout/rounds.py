"""Rounds: F1 and F2 run several times, the hubs taking turns; a hub's rounds of a scenario
become one row of medians, and each round's relay / nchan ratios a note under the table."""

from __future__ import annotations

import statistics
from typing import Any

from ..tables import ratio
from .scenarios import SCENARIOS

ROUND_KEYS = ("cpu_s_per_1m", "latency_p50_ms", "latency_p99_ms", "hub_core_busy_pct",
              "steal_pct")
SUMMED = frozenset({"lost", "drops", "bad_events", "short_subscribers", "short_events",
                    "publish_errors", "subscribe_errors", "deliveries", "deliveries_expected",
                    "publishes"})


def merge_rounds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One hub's rounds of one scenario as one row: each figure the median of its rounds
    (counts of losses and errors summed), with each round's main figures under ``rounds``.
    A round that failed or was missing makes the row that round's."""
    bad = [r for r in rows if "missing" in r or "failed" in r]
    if bad or len(rows) == 1:
        return bad[0] if bad else rows[0]
    merged: dict[str, Any] = dict(rows[0])
    for key, value in rows[0].items():
        values = [v for r in rows if isinstance(v := r.get(key), (int, float))]
        if isinstance(value, bool) or len(values) < len(rows):
            continue
        if key in SUMMED:
            merged[key] = sum(values)
        else:
            mid = statistics.median(values)
            counts = all(isinstance(v, int) for v in values) and mid == int(mid)
            merged[key] = int(mid) if counts else round(mid, 3)  # (two rounds' 2 and 2: 2)
    merged["rounds"] = [{k: r.get(k) for k in ROUND_KEYS} for r in rows]
    return merged


def round_notes(rows: list[dict[str, Any]]) -> list[str]:
    """For each scenario run in rounds: the relay / nchan ratios of each round."""
    by = {(r["hub"], r["scenario"]): r for r in rows}
    notes = []
    for scenario in SCENARIOS:
        ours, theirs = by.get(("relay", scenario), {}), by.get(("nchan", scenario), {})
        if "rounds" not in ours or "rounds" not in theirs:
            continue
        parts = []
        for key, label in (("cpu_s_per_1m", "CPU"), ("latency_p99_ms", "p99")):
            ratios = [ratio(a.get(key), b.get(key))
                      for a, b in zip(ours["rounds"], theirs["rounds"], strict=False)]
            parts.append(f"{label} {', '.join(ratios)}")
        notes.append(f"{scenario} relay / nchan by round (the table: medians of "
                     f"{len(ours['rounds'])} rounds): " + "; ".join(parts))
    return notes
