"""The benchmark scenarios. Each runs its load from a separate process pinned to the load CPU,
reads the relay's CPU time and RSS from /proc around it, and returns a flat dict of figures.

C  N concurrent paced streams (40k events/s in all, started at 1,000/s), timestamps in events
T  wrk, 50 connections, streams whose events are written back to back
M  20 slow readers (1 KB/s) of 10 MB streams: RSS growth
S  wrk, short non-streaming JSON requests on keep-alive connections
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .procs import Proc, RssSampler

HERE = Path(__file__).resolve().parent
RATE = 40_000  # events per second in scenario C, at every N
C_EVENTS = 100  # events per stream in C (role chunk + 98 tokens + finish chunk)
T_TOKENS = 1000
M_CLIENTS, M_RATE, M_TOKENS, M_SECONDS = 20, 1024, 50_000, 10.0  # 50k tokens ~ 10 MB


def _pinned(cpus: set[int]) -> Any:
    return lambda: os.sched_setaffinity(0, cpus)


def measure(relay: Proc | None, argv: list[str], cpus: set[int], timeout: float,
             env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess[str], float, int, int, float]:
    """Run a load process; return it, relay CPU seconds, RSS before, peak RSS, wall seconds."""
    rss0 = relay.rss_bytes() if relay else 0
    cpu0 = relay.cpu_seconds() if relay else 0.0
    t0 = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    if relay is None:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             preexec_fn=_pinned(cpus), env=full_env)
        return out, 0.0, 0, 0, time.monotonic() - t0
    with RssSampler(relay) as sampler:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             preexec_fn=_pinned(cpus), env=full_env)
    return out, relay.cpu_seconds() - cpu0, rss0, sampler.peak, time.monotonic() - t0


def scenario_c(url: str, relay: Proc | None, n: int, cpus: set[int], workdir: Path,
               idle_rss: int = 0, headers: tuple[str, ...] = ()) -> dict[str, Any]:
    """``idle_rss``: the relay's RSS when it started. Per-stream RSS is counted from there, not
    from just before this run: Python keeps freed memory, so an earlier, smaller run would hide
    part of this one's growth."""
    delay_ms = max(1, round(n / RATE * 1000))
    ramp = max(1.0, n / 1000)  # 1,000 stream starts/s: a 10k storm in 1 s overflows accept queues
    expected = C_EVENTS * delay_ms / 1000 + ramp
    out_file = workdir / f"c{n}.json"
    argv = [sys.executable, "-m", "bench.loadgen", url, "--once", "--no-progress",
            "--streams", str(n), "--tokens", str(C_EVENTS - 2), "--delay-ms", str(delay_ms),
            "--ramp", str(ramp), "--timeout", str(expected * 4 + 30), "--json", str(out_file),
            *loadgen_headers(headers)]
    out, cpu, rss0, peak, _ = measure(relay, argv, cpus, expected * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    r = json.loads(out_file.read_text())
    events = r["events"]
    return {
        "streams": n, "delay_ms": delay_ms, "events": events, "errors": r["errors"],
        "error_kinds": r["error_kinds"],
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1m_events": round(cpu / events * 1e6, 2) if relay and events else None,
        "latency_p50_ms": r["latency_ms"]["p50"], "latency_p99_ms": r["latency_ms"]["p99"],
        "ttfe_p50_ms": r["ttfe_ms"]["p50"], "ttfe_p99_ms": r["ttfe_ms"]["p99"],
        "rss_idle_mib": round(idle_rss / 2**20, 1) if relay else None,
        "rss_per_stream_kib": round((peak - (idle_rss or rss0)) / n / 1024, 2) if relay else None,
    }


def loadgen_headers(headers: tuple[str, ...]) -> list[str]:
    """``bench.loadgen`` arguments for the headers a relay needs (``RelaySpec.headers``)."""
    return [arg for h in headers for arg in ("--header", h)]


def _wrk(url: str, script: str, relay: Proc | None, cpus: set[int], seconds: int,
         env: dict[str, str], headers: tuple[str, ...] = ()) -> tuple[int, float, float, str]:
    argv = ["wrk", "-t1", "-c50", f"-d{seconds}s", "-s", str(HERE / "lua" / script), url,
            *(arg for h in headers for arg in ("-H", h.replace(":", ": ", 1)))]
    out, cpu, _, _, _ = measure(relay, argv, cpus, seconds + 60, env)
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out.stdout)
    if not match:
        raise RuntimeError(f"wrk output not understood:\n{out.stdout}\n{out.stderr}")
    requests = int(match.group(1))
    duration = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return requests, duration, cpu, out.stdout


def _wrk_errors(text: str) -> int:
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)",
                    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        match = re.search(pattern, text)
        if match:
            errors += sum(int(g) for g in match.groups())
    return errors


def scenario_t(url: str, relay: Proc | None, cpus: set[int], seconds: int = 10
               ) -> dict[str, Any]:
    requests, duration, cpu, text = _wrk(url + "/v1/chat/completions", "stream.lua", relay,
                                         cpus, seconds, {"BENCH_TOKENS": str(T_TOKENS)})
    events = requests * (T_TOKENS + 2)
    return {
        "streams": requests, "events": events, "events_per_s": round(events / duration),
        "streams_per_s": round(requests / duration, 1), "errors": _wrk_errors(text),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_event": round(cpu / events * 1e6, 3) if relay and events else None,
    }


def scenario_s(url: str, relay: Proc | None, cpus: set[int], seconds: int = 10,
               headers: tuple[str, ...] = ()) -> dict[str, Any]:
    requests, duration, cpu, text = _wrk(url + "/v1/chat/completions", "json.lua", relay,
                                         cpus, seconds, {}, headers)
    return {
        "requests": requests, "requests_per_s": round(requests / duration),
        "errors": _wrk_errors(text), "cpu_s": round(cpu, 3),
        "cpu_us_per_request": round(cpu / requests * 1e6, 2) if relay and requests else None,
    }


def scenario_m(url: str, relay: Proc | None, cpus: set[int], workdir: Path) -> dict[str, Any]:
    out_file = workdir / "m.json"
    argv = [sys.executable, "-m", "bench.loadgen", url, "--no-progress",
            "--streams", str(M_CLIENTS), "--tokens", str(M_TOKENS), "--slow-rate", str(M_RATE),
            "--duration", str(M_SECONDS), "--json", str(out_file)]
    time.sleep(0.5)
    out, _, rss0, peak, _ = measure(relay, argv, cpus, M_SECONDS + 60)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    r = json.loads(out_file.read_text())
    return {
        "clients": M_CLIENTS, "read_bytes": r["bytes"], "errors": r["errors"],
        "rss_before_mib": round(rss0 / 2**20, 1) if relay else None,
        "rss_growth_mib": round((peak - rss0) / 2**20, 2) if relay else None,
    }
