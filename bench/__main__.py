"""Side-by-side benchmark of relays: ``python -m bench`` (``make bench``).

    python -m bench                              # all relays, all scenarios, 3 repetitions
    python -m bench --quick                      # C at 2,000 streams and M, relay vs nginx, once
    python -m bench --relays relay,nginx --scenarios C,T --streams 1000,2000 --reps 1
    python -m bench --quick --relays relay@../before,relay,nginx   # a tree before, beside

For each repetition and relay, a fresh mock upstream and the relay are started, the relay pinned
to one CPU and the mock and load generator to the other; the scenarios run one after the other.
Results go to bench/results/: run-<time>.json, latest.json, latest.md (medians and ratios)
and latest_scenario_c.png (quick runs: quick.json, quick.md, quick_scenario_c.png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .procs import Proc, cpu_sets, free_port, git_rev, wait_port
from .relays import nofile_limit, spec
from .report import write_report
from .scenarios import scenario_c, scenario_m, scenario_s, scenario_t

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relays", default=None,
                    help="comma-separated (default relay,nginx,aiohttp,fastapi,direct; "
                         "relay@PATH: the relay of the checkout at PATH, e.g. a tree before)")
    ap.add_argument("--scenarios", default="C,T,M,S")
    ap.add_argument("--streams", default="1000,2000,5000,10000", help="N values for scenario C")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="duration of T and S")
    ap.add_argument("--quick", action="store_true",
                    help="C at 2,000 streams and M, relay vs nginx, one repetition")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.scenarios, args.streams, args.reps = "C,M", "2000", 1
    if args.relays is None:
        args.relays = "relay,nginx" if args.quick else "relay,nginx,aiohttp,fastapi,direct"
    return args


def stream_levels(requested: str) -> tuple[list[int], str | None]:
    """C's N values, capped by the open-file limit: a relay holds two sockets per stream."""
    cap = (nofile_limit() - 200) // 2
    levels, note = [], None
    for n in (int(x) for x in requested.split(",")):
        if n > cap:
            note = (f"C at {n} streams ran as {cap}: the open-file limit here is "
                    f"{nofile_limit()} and a relay holds two sockets per stream")
            n = cap
        levels.append(n)
    return levels, note


def _runs(scenarios: list[str], levels: list[int], seconds: int,
          headers: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(key, fn(url, relay, load_cpus, workdir, idle_rss)) for every scenario run (``headers``:
    what the load must send to this relay, as ``name:value``: LiteLLM's key)."""
    runs: list[tuple[str, Any]] = []
    for scenario in scenarios:
        if scenario == "C":
            runs += [(f"C{n}", lambda url, relay, cpus, wd, idle, n=n:
                      scenario_c(url, relay, n, cpus, wd, idle, headers)) for n in levels]
        elif scenario == "T":
            runs.append(("T", lambda url, relay, cpus, wd, idle:
                         scenario_t(url, relay, cpus, seconds)))
        elif scenario == "M":
            runs.append(("M", lambda url, relay, cpus, wd, idle:
                         scenario_m(url, relay, cpus, wd)))
        elif scenario == "S":
            runs.append(("S", lambda url, relay, cpus, wd, idle:
                         scenario_s(url, relay, cpus, seconds, headers)))
    return runs


def run_relay(name: str, scenarios: list[str], levels: list[int], seconds: int, rep: int,
              workdir: Path) -> list[dict[str, Any]]:
    """Every scenario run on a fresh mock and a fresh relay, so none inherits another's heap
    (Python keeps freed memory: RSS figures after a big run would hide growth)."""
    rows: list[dict[str, Any]] = []
    saturated = False
    for key, fn in _runs(scenarios, levels, seconds, spec(name).headers()):
        if saturated and key.startswith("C"):
            rows.append({"relay": name, "rep": rep, "scenario": key,
                         "skipped": "saturated at a lower N"})
            continue
        print(f"  rep {rep} {name:8} {key:7}", end=" ", flush=True)
        t0 = time.monotonic()
        try:
            row = _run_fresh(name, fn, workdir)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            row = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"{time.monotonic() - t0:5.1f}s {_brief(row)}", flush=True)
        rows.append({"relay": name, "rep": rep, "scenario": key, **row})
        # Saturated: it failed or dropped streams, or made clients wait over 10 s for a first
        # event (TTFE alone is noisy here: the load side shares one core with the mock).
        if key.startswith("C") and (row.get("failed") or row.get("errors")
                                    or (row.get("ttfe_p50_ms") or 0) > 10_000):
            saturated = True
    return rows


def _run_fresh(name: str, fn: Any, workdir: Path) -> dict[str, Any]:
    relay_cpus, load_cpus = cpu_sets()
    mock_port, port = free_port(), free_port()
    mock = Proc([sys.executable, "-m", "relay", "mock", "--port", str(mock_port)], load_cpus,
                workdir / "mock.log")
    relay: Proc | None = None
    try:
        wait_port(mock_port)
        relay = spec(name).start(port, mock_port, relay_cpus, workdir)
        url = f"http://127.0.0.1:{mock_port if relay is None else port}"
        idle_rss = relay.rss_bytes() if relay else 0
        row: dict[str, Any] = fn(url, relay, load_cpus, workdir, idle_rss)
        if relay is not None and not relay.alive():
            raise RuntimeError(f"{name} died")
        return row
    finally:
        if relay is not None:
            relay.stop()
        mock.stop()


def _brief(row: dict[str, Any]) -> str:
    keys = ("cpu_s_per_1m_events", "latency_p99_ms", "ttfe_p50_ms", "rss_per_stream_kib",
            "cpu_us_per_event", "events_per_s", "rss_growth_mib", "requests_per_s",
            "cpu_us_per_request", "errors", "failed")
    return " ".join(f"{k}={row[k]}" for k in keys if row.get(k) is not None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.sched_setaffinity(0, cpu_sets()[1])  # the runner (and its RSS sampler) off the relay's CPU
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    relays = [r for r in args.relays.split(",") if r]
    missing = {r: why for r in relays if (why := spec(r).missing())}
    for name, why in missing.items():
        print(f"MISSING {name}: {why}", file=sys.stderr)
    scenarios = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    if shutil.which("wrk") is None and {"T", "S"} & set(scenarios):
        missing["wrk"] = "wrk not installed (make bench-deps): scenarios T and S not run"
        print(f"MISSING wrk: {missing['wrk']}", file=sys.stderr)
        scenarios = [s for s in scenarios if s not in ("T", "S")]
    levels, note = stream_levels(args.streams)
    if note:
        print(f"NOTE {note}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%dT%H-%M-%S")
    stem = "quick" if args.quick else "latest"  # a quick check never replaces the full report
    md = ""
    meta = {
        "started": started, "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "args": vars(args), "git": git_rev(), "missing": missing,
        "notes": [note] if note else [],
    }
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for rep in range(1, args.reps + 1):
            for name in relays:
                if name in missing:
                    continue
                workdir = Path(tmp) / f"{spec(name).slug}-{rep}"
                workdir.mkdir()
                rows += run_relay(name, scenarios, levels, args.seconds, rep, workdir)
                # Written after every relay: an interrupted run still leaves its figures.
                md = _save({"meta": meta, "rows": rows}, out, started, stem)
    print()
    print(md)


def _save(doc: dict[str, Any], out: Path, started: str, stem: str) -> str:
    (out / f"run-{started}.json").write_text(json.dumps(doc, indent=1))
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    return write_report(doc, out, stem)


if __name__ == "__main__":
    main()
