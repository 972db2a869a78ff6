"""bench/fanout/rounds.py: a hub's rounds as one row of medians, and each round's ratios."""

from __future__ import annotations

from typing import Any

from bench.fanout.rounds import merge_rounds, round_notes


def test_rounds_merge_into_medians_with_losses_summed_and_each_round_kept() -> None:
    def row(cpu: float, p99: float, lost: int) -> dict[str, Any]:
        return {"hub": "relay", "scenario": "F2", "cpu_s_per_1m": cpu, "latency_p99_ms": p99,
                "lost": lost, "subscribers": 10_000, "notes": "x"}

    merged = merge_rounds([row(18.0, 4.0, 0), row(30.0, 9.0, 2), row(17.0, 3.0, 1)])
    assert merged["cpu_s_per_1m"] == 18.0 and merged["latency_p99_ms"] == 4.0
    assert merged["lost"] == 3 and merged["subscribers"] == 10_000 and merged["notes"] == "x"
    assert [r["cpu_s_per_1m"] for r in merged["rounds"]] == [18.0, 30.0, 17.0]
    clients = merge_rounds([{**row(1.0, 1.0, 0), "redis_clients": n} for n in (2, 2, 3)])
    assert clients["redis_clients"] == 2 and isinstance(clients["redis_clients"], int)
    assert merge_rounds([{**row(1.0, 1.0, 0), "redis_clients": n} for n in (2, 3)]
                        )["redis_clients"] == 2.5
    failed = {"hub": "relay", "scenario": "F2", "failed": "boom"}
    assert merge_rounds([row(1, 1, 0), failed]) is failed
    nchan = {**merge_rounds([row(9.0, 2.0, 0), row(10.0, 4.0, 0), row(20.0, 8.0, 0)]),
             "hub": "nchan"}
    notes = round_notes([merged, nchan])
    assert notes == ["F2 relay / nchan by round (the table: medians of 3 rounds): "
                     "CPU 2.00x, 3.00x, 0.85x; p99 2.00x, 2.25x, 0.38x"]
