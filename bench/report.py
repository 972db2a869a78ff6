"""Medians over repetitions, ratios against nginx and the best Python peer, Markdown and PNG."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .tables import fmt, ratio

# (scenario prefix, metric, label, lower is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("C", "cpu_s_per_1m_events", "relay CPU s per 1M events", True),
    ("C", "latency_p50_ms", "latency p50 ms (upstream write -> client read)", True),
    ("C", "latency_p99_ms", "latency p99 ms", True),
    ("C", "ttfe_p50_ms", "time to first event p50 ms", True),
    ("C", "ttfe_p99_ms", "time to first event p99 ms", True),
    ("C", "rss_per_stream_kib", "RSS per open stream KiB", True),
    ("C", "errors", "errors", True),
    ("T", "cpu_us_per_event", "relay CPU us per event", True),
    ("T", "events_per_s", "events/s", False),
    ("T", "errors", "errors", True),
    ("M", "rss_growth_mib", "RSS growth MiB, 20 slow readers", True),
    ("S", "requests_per_s", "requests/s", False),
    ("S", "cpu_us_per_request", "relay CPU us per request", True),
]
ORDER = ["relay", "relay-log", "nginx", "aiohttp", "fastapi", "litellm", "pipe", "direct"]
PYTHON_PEERS = ("aiohttp", "fastapi", "litellm")
OURS = ("relay-log", "relay")  # the ratios' relay: with its access log on when it ran so


def medians(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["relay"], row["scenario"]), []).append(row)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, group in groups.items():
        med: dict[str, Any] = {"reps": len(group)}
        for _, metric, _, _ in METRICS:
            values = [r[metric] for r in group if isinstance(r.get(metric), (int, float))]
            if values:
                med[metric] = statistics.median(values)
        notes = {r.get("failed") or r.get("skipped") for r in group} - {None}
        if notes:
            med["note"] = "; ".join(sorted(notes))
        out[key] = med
    return out


def table(doc: dict[str, Any]) -> str:
    med = medians(doc["rows"])
    relays = [r for r in ORDER if any(k[0] == r for k in med)]
    us = next((r for r in OURS if r in relays), "relay")
    scenarios = sorted({k[1] for k in med}, key=lambda s: ("CTMS".index(s[0]), len(s), s))
    head = ["scenario", "metric", *relays, f"{us} / nginx", f"{us} / best Python peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in scenarios:
        for prefix, metric, label, lower in METRICS:
            if not scenario.startswith(prefix):
                continue
            cells = [med.get((r, scenario), {}).get(metric) for r in relays]
            if all(c is None for c in cells):
                continue
            peers = [med.get((p, scenario), {}).get(metric) for p in PYTHON_PEERS]
            peers = [p for p in peers if isinstance(p, (int, float))]
            best = (min(peers) if lower else max(peers)) if peers else None
            ours = med.get((us, scenario), {}).get(metric)
            theirs = med.get(("nginx", scenario), {}).get(metric)
            lines.append("| " + " | ".join([scenario, label, *map(fmt, cells),
                                            ratio(ours, theirs), ratio(ours, best)]) + " |")
    notes = [f"- {r} {s}: {m['note']}" for (r, s), m in sorted(med.items()) if m.get("note")]
    meta = doc["meta"]
    missing = [f"- MISSING {k}: {v}" for k, v in meta.get("missing", {}).items()]
    reps = max((m["reps"] for m in med.values()), default=0)
    header = (f"Medians of {reps} repetition(s); run {meta['started']} at {meta['git']}, "
              f"{meta['cpus']} CPUs, Python {meta['python']}. Relay pinned to one CPU, mock "
              f"and load to the other. C: N streams x 100 events, 40k events/s in all.")
    return "\n".join([header, "", *lines, "", *missing, *notes,
                      *[f"- {n}" for n in meta.get("notes", [])]]).rstrip() + "\n"


def plots(doc: dict[str, Any], out: Path, stem: str = "latest") -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    med = medians(doc["rows"])
    relays = [r for r in ORDER if any(k[0] == r for k in med)]
    c_keys = sorted({k[1] for k in med if k[1].startswith("C")}, key=lambda s: int(s[1:]))
    if not c_keys:
        return []
    ns = [int(k[1:]) for k in c_keys]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = dict(zip(ORDER, ("tab:blue", "tab:cyan", "tab:green", "tab:orange", "tab:red",
                              "tab:brown", "tab:purple", "tab:gray"), strict=True))
    for relay in relays:
        color = colors.get(relay, "black")
        cpu = [med.get((relay, k), {}).get("cpu_s_per_1m_events") for k in c_keys]
        if any(v is not None for v in cpu):
            ax1.plot(ns, [v if v is not None else float("nan") for v in cpu], "o-", label=relay,
                     color=color)
        for metric, style in (("latency_p50_ms", "o-"), ("latency_p99_ms", "s--")):
            lat = [med.get((relay, k), {}).get(metric) for k in c_keys]
            if any(v is not None for v in lat):
                ax2.plot(ns, [v if v is not None else float("nan") for v in lat], style,
                         label=f"{relay} {metric[8:11]}", color=color)
    ax1.set(title="Scenario C: relay CPU per 1M events", xlabel="concurrent streams",
            ylabel="CPU seconds (log)", yscale="log")
    ax2.set(title="Scenario C: per-event latency (solid p50, dashed p99)",
            xlabel="concurrent streams", ylabel="ms (log)", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"{stem}_scenario_c.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_report(doc: dict[str, Any], out: Path, stem: str = "latest") -> str:
    md = table(doc)
    images = plots(doc, out, stem)
    md += "".join(f"\n![{p.stem}]({p.name})\n" for p in images)
    (out / f"{stem}.md").write_text(md)
    return md
