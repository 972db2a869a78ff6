"""``python -m bench.fanout``: its flags, and the runner that takes the hubs through the
scenarios in rounds, saving the report after every run."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench.fanout as fanout

from ..procs import cpu_sets, git_rev
from .hubs import HUBS, HubMissing, hub_missing, start_hub
from .load import Load
from .report import row_notes, save
from .rounds import merge_rounds, round_notes
from .scenarios import SCENARIOS, measure
from .stall import stall

RESULTS = Path(__file__).resolve().parents[1] / "results"
# --help: the package docstring up to its map of modules (that is for readers of the code).
DESCRIPTION = (fanout.__doc__ or "").split("\nThe modules:")[0]
FD_RESERVE = 1000  # sockets besides the subscribers: publishers, F-stall's streams, redis


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hubs", default=",".join(HUBS), help=f"any of {','.join(HUBS)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="any of F1,F2,F-stall")
    ap.add_argument("--subscribers", type=int, default=10_000, help="F1: on one channel")
    ap.add_argument("--channels", type=int, default=1000, help="F2: channels")
    ap.add_argument("--per-channel", type=int, default=10, help="F2: subscribers per channel")
    ap.add_argument("--rate", type=float, default=30_000,
                    help="deliveries per second (nchan's F2 saturates near 45,000 here)")
    ap.add_argument("--duration", type=float, default=20, help="seconds of publishing")
    ap.add_argument("--size", type=int, default=200, help="bytes of data per event")
    ap.add_argument("--streams", type=int, default=200, help="F-stall: relayed LLM streams")
    ap.add_argument("--idle", type=float, default=2.0,
                    help="seconds all subscribers idle before RSS and Redis clients are read")
    ap.add_argument("--rounds", type=int, default=3,
                    help="F1 and F2 run this many times per hub, the hubs taking turns; each "
                         "figure is the median of its rounds (F-stall runs once)")
    ap.add_argument("--quick", action="store_true",
                    help="2,000 subscribers (F2: 200 x 10), 5 s windows")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.subscribers, args.channels, args.duration, args.idle = 2000, 200, 5.0, 1.0
        args.rounds = 1
    return args


def cap_subscribers(args: argparse.Namespace) -> list[str]:
    """Raise the open-file limit to its hard value (hubs inherit it); cap subscriber counts
    by it: this process holds one socket per subscriber, and so does the hub."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cap = hard - FD_RESERVE
    notes = []
    if args.subscribers > cap:
        notes.append(f"F1 ran {cap} subscribers, not {args.subscribers}: the open-file limit "
                     f"is {hard} per process")
        args.subscribers = cap
    if args.channels * args.per_channel > cap:
        args.channels = cap // args.per_channel
        notes.append(f"F2 ran {args.channels} channels: the open-file limit is {hard}")
    return notes


def choose(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The hubs and scenarios asked for (scenarios in their fixed order); exit on a name that
    is neither."""
    hubs = [h for h in args.hubs.split(",") if h]
    wanted = {{"stall": "f-stall"}.get(w, w) for w in args.scenarios.lower().split(",") if w}
    scenarios = [s for s in SCENARIOS if s.lower() in wanted]
    unknown = (set(hubs) - set(HUBS)) | (wanted - {s.lower() for s in SCENARIOS})
    if unknown:
        raise SystemExit(f"unknown {sorted(unknown)}: hubs are {', '.join(HUBS)}, scenarios "
                         f"{', '.join(SCENARIOS)}")
    return hubs, scenarios


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    hubs, scenarios = choose(args)
    args.cpus = cpu_sets()  # before pinning: then this process sees only the load CPUs
    os.sched_setaffinity(0, args.cpus[1])  # the load (and its children) off the hub's CPU
    notes = cap_subscribers(args)
    missing = {h: why for h in hubs if (why := hub_missing(h))}
    for h, why in missing.items():
        print(f"MISSING {h}: {why}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "fanout-quick" if args.quick else "fanout"  # a quick try never replaces the report
    doc: dict[str, Any] = {"meta": run_meta(args, hubs, scenarios, missing, notes), "rows": []}
    with tempfile.TemporaryDirectory(prefix="relay-fanout-") as tmp:
        run_rounds(args, doc, Path(tmp), lambda: save(doc, out, stem))
    doc["meta"]["notes"] += round_notes(doc["rows"])
    print()
    print(save(doc, out, stem))


def run_meta(args: argparse.Namespace, hubs: list[str], scenarios: list[str],
             missing: dict[str, str], notes: list[str]) -> dict[str, Any]:
    """The report's ``meta``: when, where, with what flags, which hubs are missing."""
    return {
        "started": time.strftime("%Y-%m-%dT%H-%M-%S"), "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "git": git_rev(),
        "args": {k: v for k, v in vars(args).items() if k != "cpus"},
        "hub_cpus": sorted(args.cpus[0]), "load_cpus": sorted(args.cpus[1]), "hubs": hubs,
        "scenarios": scenarios, "missing": missing,
        "notes": notes, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    }


def run_rounds(args: argparse.Namespace, doc: dict[str, Any], tmp: Path,
               saved: Callable[[], object]) -> None:
    """Every round of every run into ``doc["rows"]`` (the hubs take turns: they share the
    host's moments), calling ``saved`` after each so an interrupted run keeps its figures."""
    meta, notes = doc["meta"], list(doc["meta"]["notes"])
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for turn in range(max(1, args.rounds)):
        for hub, scenario, load in plan(args, meta["hubs"], meta["scenarios"]):
            if turn and scenario == "F-stall":
                continue  # (its own on and off windows: once is enough)
            row: dict[str, Any] = {"hub": hub, "scenario": scenario}
            if hub in meta["missing"]:
                row["missing"] = meta["missing"][hub]
            else:
                row.update(attempt(hub, scenario, load, args, tmp / str(turn),
                                   meta["missing"]))
            runs.setdefault((hub, scenario), []).append(row)
            doc["rows"] = [merge_rounds(rows) for rows in runs.values()]
            meta["notes"] = notes + [n for r in doc["rows"] for n in row_notes(r)]
            saved()


def plan(args: argparse.Namespace, hubs: list[str], scenarios: list[str]
         ) -> list[tuple[str, str, Load]]:
    """(hub, scenario, load) of every run in one round, in order: each hub runs its scenarios
    in turn (relay-redis: F1 only; F-stall: the relay only)."""
    f1 = Load(1, args.subscribers, args.rate, args.duration, args.size, args.idle)
    f2 = Load(args.channels, args.per_channel, args.rate, args.duration, args.size, args.idle)
    runs: list[tuple[str, str, Load]] = []
    for hub in hubs:
        for scenario in scenarios:
            if scenario == "F1" or (scenario == "F2" and hub != "relay-redis"):
                runs.append((hub, scenario, f1 if scenario == "F1" else f2))
            elif scenario == "F-stall" and hub == "relay":
                runs.append((hub, scenario, f1))
    return runs


def run_one(hub_name: str, scenario: str, load: Load, args: argparse.Namespace,
            workdir: Path) -> dict[str, Any]:
    """Start the hub, run the scenario on a fresh uvloop, stop the hub."""
    import uvloop

    hub = start_hub(hub_name, args.cpus, workdir)
    try:
        if scenario == "F-stall":
            return uvloop.run(stall(hub, load, args.streams, workdir))
        return uvloop.run(measure(hub, load))
    finally:
        hub.stop()


def attempt(hub: str, scenario: str, load: Load, args: argparse.Namespace, tmp: Path,
            missing: dict[str, str]) -> dict[str, Any]:
    """One run, its brief printed; a hub found missing joins ``missing``, an error becomes
    the row's ``failed``."""
    print(f"  {hub:11} {scenario:7}", end=" ", flush=True)
    workdir = tmp / f"{hub}-{scenario}"
    workdir.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        row = run_one(hub, scenario, load, args, workdir)
    except HubMissing as exc:
        missing[hub] = str(exc)  # the relay's endpoints: later scenarios are skipped too
        row = {"missing": str(exc)}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        row = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
    keys = ("subscribers", "publish_rate", "cpu_s_per_1m", "latency_p50_ms", "latency_p99_ms",
            "rss_per_sub_kib", "lost", "redis_clients", "hub_core_busy_pct",
            "load_core_busy_pct",
            "stall_p99_alone_ms", "stall_p99_fanout_ms", "missing", "failed")
    brief = " ".join(f"{k}={row[k]}" for k in keys if row.get(k) is not None)
    print(f"{time.monotonic() - t0:5.1f}s {brief}", flush=True)
    return row
