"""What a fan-out window costs: CPU seconds of the hub, its redis-server and this process, and
how busy each side's cores were, read before and after it (from /proc)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..procs import Proc
from .hubs import Hub

Ticks = tuple[int, int, int]  # (busy, total, steal) clock ticks of a set of cores


def parse_core_ticks(stat: str, cpus: set[int]) -> Ticks:
    """(busy, total, steal) ticks of ``cpus`` in /proc/stat's text. Busy includes softirq time,
    which no process is charged for: on loopback the receiving side's TCP work lands there.
    Steal is time the virtual machine's host ran something else: none of ours, and while it
    lasts every process here is late."""
    busy = total = steal = 0
    for line in stat.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4] - ticks[7]
            steal += ticks[7]
    return busy, total, steal


def core_ticks(cpus: set[int]) -> Ticks:
    """``parse_core_ticks`` of this moment's /proc/stat."""
    return parse_core_ticks(Path("/proc/stat").read_text(), cpus)


def busy_pct(before: Ticks, after: Ticks, which: int = 0) -> float | None:
    """Percent of the ticks between two readings that were busy (``which=2``: stolen)."""
    total = after[1] - before[1]
    return round((after[which] - before[which]) / total * 100, 1) if total else None


def proc_cpu(proc: Proc | None) -> float:
    """A process tree's CPU seconds; 0 for none."""
    return proc.cpu_seconds() if proc is not None else 0.0


@dataclass(frozen=True)
class Usage:
    """CPU spent between two readings, and the cores' busy and steal percentages."""

    hub_cpu: float
    redis_cpu: float
    own_cpu: float  # this process: the load generator
    hub_core_busy_pct: float | None
    load_core_busy_pct: float | None
    steal_pct: float | None  # of both sides' cores together


@dataclass(frozen=True)
class Meters:
    """The counters at one moment: CPU seconds of the hub's process tree, of its redis-server
    and of this process, and the ticks of the hub's cores and of the load's."""

    hub_cpu: float
    redis_cpu: float
    own_cpu: float
    hub_core: Ticks
    load_core: Ticks

    @classmethod
    def read(cls, hub: Hub) -> Meters:
        return cls(hub.proc.cpu_seconds(), proc_cpu(hub.redis), time.process_time(),
                   core_ticks(hub.cpus), core_ticks(hub.load_cpus))

    def since(self, before: Meters) -> Usage:
        """What was used from ``before`` to this reading."""
        both0 = (0, before.hub_core[1] + before.load_core[1],
                 before.hub_core[2] + before.load_core[2])
        both1 = (0, self.hub_core[1] + self.load_core[1], self.hub_core[2] + self.load_core[2])
        return Usage(self.hub_cpu - before.hub_cpu, self.redis_cpu - before.redis_cpu,
                     self.own_cpu - before.own_cpu, busy_pct(before.hub_core, self.hub_core),
                     busy_pct(before.load_core, self.load_core), busy_pct(both0, both1, 2))
