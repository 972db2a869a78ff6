"""Benchmark F's report: one Markdown table of every hub's figures with the relay / nchan
ratio, a header saying what was run, and notes a reader must know (missing hubs, a busy load
side, losses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..tables import fmt, md_row, ratio
from .hubs import HUBS
from .scenarios import SCENARIOS
from .stall import WINDOW_S

# (scenarios, key, label); lower is better for all but the rates
METRICS: list[tuple[tuple[str, ...], str, str]] = [
    (("F1", "F2"), "subscribers", "subscribers connected"),
    (("F1", "F2"), "publish_rate", "publishes/s achieved"),
    (("F1", "F2"), "deliveries_per_s", "deliveries/s received"),
    (("F1", "F2"), "cpu_s_per_1m", "hub CPU s per 1M deliveries"),
    (("F1", "F2"), "latency_p50_ms", "publish->delivery p50 ms"),
    (("F1", "F2"), "latency_p99_ms", "publish->delivery p99 ms"),
    (("F1", "F2"), "rss_per_sub_kib", "RSS per idle subscriber KiB"),
    (("F1", "F2"), "lost", "events lost (expected - received)"),
    (("F1", "F2"), "redis_clients", "Redis client connections"),
    (("F1", "F2"), "redis_cpu_s_per_1m", "redis-server CPU s per 1M deliveries"),
    (("F1", "F2"), "hub_core_busy_pct", "hub's core busy % (/proc/stat: anyone's, softirq too)"),
    (("F1", "F2"), "load_core_busy_pct", "load generator's core busy % (same)"),
    (("F1", "F2", "F-stall"), "steal_pct", "host steal % of both cores (a VM's; not ours)"),
    (("F-stall",), "stall_p99_alone_ms", "LLM streams per-event p99 ms, between publishes"),
    (("F-stall",), "stall_p99_fanout_ms", "LLM streams per-event p99 ms, F1 publishing"),
    (("F-stall",), "stall_p99_delta_ms", "difference ms (target <= +10)"),
    (("F-stall",), "latency_p99_ms", "fan-out publish->delivery p99 ms"),
    (("F-stall",), "lost", "fan-out events lost"),
]
COLUMNS = {"relay": "relay", "relay-redis": "relay --redis", "nchan": "nchan",
           "starlette": "starlette"}




def table(doc: dict[str, Any]) -> str:
    """The report: header, table, notes (``doc``: meta and rows as bench/fanout/cli.py saves)."""
    meta = doc["meta"]
    hubs = [h for h in HUBS if h in meta["hubs"]]
    head = ["scenario", "metric", *(COLUMNS[h] for h in hubs), "relay / nchan"]
    lines = [md_row(head), "|" + "---|" * len(head), *metric_lines(doc, hubs)]
    notes = [f"- MISSING {h}: {why}" for h, why in meta["missing"].items()]
    notes += [f"- {r['hub']} {r['scenario']} failed: {r['failed']}" for r in doc["rows"]
              if "failed" in r]
    notes += [f"- {n}" for n in meta["notes"]]
    return "\n".join([header(meta), "", *lines, "", *notes]).rstrip() + "\n"


def metric_lines(doc: dict[str, Any], hubs: list[str]) -> list[str]:
    """One line per scenario and metric that some hub has a figure for."""
    rows = {(r["hub"], r["scenario"]): r for r in doc["rows"]}
    lines = []
    for scenario in [s for s in SCENARIOS if s in doc["meta"]["scenarios"]]:
        for scenarios, key, label in METRICS:
            if scenario not in scenarios:
                continue
            cells = [cell(rows.get((h, scenario)), key) for h in hubs]
            if all(c in ("", "-") for c in cells):
                continue
            ours = rows.get(("relay", scenario), {}).get(key)
            theirs = rows.get(("nchan", scenario), {}).get(key)
            lines.append(md_row([scenario, label, *cells, ratio(ours, theirs)]))
    return lines


def cell(found: dict[str, Any] | None, key: str) -> str:
    """A hub's cell: empty when not run for this hub (relay-redis: F1 only), MISSING, failed
    or the figure."""
    if found is None:
        return ""
    if "missing" in found:
        return "MISSING"
    if "failed" in found:
        return "failed"
    return fmt(found.get(key))


def header(meta: dict[str, Any]) -> str:
    """The sentence above the table: when, where, and the load of each scenario."""
    a = meta["args"]
    return (f"Benchmark F (fan-out), run {meta['started']} at {meta['git']}, {meta['cpus']} "
            f"CPUs, Python {meta['python']}. Hub pinned to one CPU, load generator to the "
            f"other. {a['rate']:,.0f} deliveries/s of {a['size']}-byte events for "
            f"{a['duration']:g} s: F1 {a['subscribers']:,} subscribers on one channel "
            f"({a['rate'] / a['subscribers']:g} publishes/s), F2 {a['channels']:,} channels x "
            f"{a['per_channel']} ({a['rate'] / a['per_channel']:,.0f} publishes/s); "
            f"F-stall: {a['streams']} relayed LLM streams (100 tokens, 50 ms apart), F1 "
            f"publishing on and off in {WINDOW_S:g} s windows.")


def row_notes(row: dict[str, Any]) -> list[str]:
    """What a reader must know about a row: the load side busy, losses, a missed rate."""
    notes, where = [], f"{row['hub']} {row['scenario']}"
    if (row.get("load_core_busy_pct") or 0) > 90:
        notes.append(f"{where}: the load generator's core was {row['load_core_busy_pct']}% "
                     "busy: latencies include its own queueing")
    if row.get("publish_rate", 0) < 0.95 * row.get("publish_rate_target", 0):
        notes.append(f"{where}: published {row['publish_rate']}/s of "
                     f"{row['publish_rate_target']:g}/s (publishes wait for their answer)")
    if row.get("subscribers", 0) < row.get("subscribers_requested", 0):
        notes.append(f"{where}: {row['subscribers']} of {row['subscribers_requested']} "
                     f"subscribers connected ({row['subscribe_errors']})")
    if row.get("lost"):
        notes.append(f"{where}: {row['lost']} events lost; {row.get('short_subscribers')} "
                     f"subscribers got {row.get('short_events')} fewer events than the "
                     "best-served one on their channel")
    if row.get("drops"):
        notes.append(f"{where}: {row['drops']} subscriber connections dropped by the hub")
    return notes


def save(doc: dict[str, Any], out: Path, stem: str) -> str:
    """Write ``stem``.json and ``stem``.md into ``out``; return the Markdown."""
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    md = table(doc)
    (out / f"{stem}.md").write_text(md)
    return md
