"""A fan-out window's figures, from what the load counted and what the meters read; and
F-stall's split of the LLM streams' tokens by the window they were read in. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..stats import ms, percentiles
from .load import Load, Published
from .meters import Usage
from .wire import Tally


@dataclass(frozen=True)
class Window:
    """What was read around one window, besides the load's own counts."""

    connect_s: float  # all subscribers connecting
    seconds: float  # first publish to the last delivery (or the end of the drain)
    publish_s: float  # spent publishing
    rss0: int  # the hub's RSS before the subscribers connected
    rss1: int  # with all of them connected and idle
    redis_clients: int | None
    with_redis: bool
    used: Usage


def shortfall(received: Iterable[tuple[int, int]], channels: int) -> list[int]:
    """How many fewer events each subscriber got than the best-served one on its channel, for
    those that got fewer; ``received``: (channel, events) of every subscriber."""
    pairs = list(received)
    most = [0] * channels
    for channel, got in pairs:
        most[channel] = max(most[channel], got)
    return [most[channel] - got for channel, got in pairs if got < most[channel]]


def window_row(load: Load, tally: Tally, short: list[int], pub: Published, w: Window
               ) -> dict[str, Any]:
    """One window's row of the report: deliveries and their latency, then what they cost."""
    return {**delivery_figures(load, tally, short, pub, w), **cost_figures(tally, w)}


def delivery_figures(load: Load, tally: Tally, short: list[int], pub: Published, w: Window
                     ) -> dict[str, Any]:
    """Subscribers, publishes, deliveries (expected, received, lost) and their latency."""
    got = tally.received
    p50, p99, pmax = percentiles(tally.latency, (50, 99, 100))
    return {
        "channels": load.channels, "per_channel": load.per_channel,
        "subscribers_requested": load.channels * load.per_channel,
        "subscribers": tally.subscribed, "connect_s": round(w.connect_s, 2),
        "subscribe_errors": tally.errors,
        "rate_target": load.rate, "publish_rate_target": load.publish_rate,
        "publishes": pub.ok, "publish_errors": pub.errors,
        "publish_rate": round(pub.ok / w.publish_s, 1),
        "deliveries_expected": pub.expected, "deliveries": got,
        "lost": pub.expected - got, "drops": tally.drops, "bad_events": tally.bad,
        "short_subscribers": len(short), "short_events": sum(short),
        "window_s": round(w.seconds, 2), "deliveries_per_s": round(got / w.seconds),
        "latency_p50_ms": ms(p50), "latency_p99_ms": ms(p99), "latency_max_ms": ms(pmax),
    }


def cost_figures(tally: Tally, w: Window) -> dict[str, Any]:
    """CPU per million deliveries, RSS per idle subscriber, Redis clients, the cores' load."""
    got, used = tally.received, w.used

    def per_1m(seconds: float) -> float | None:
        return round(seconds / got * 1e6, 3) if got else None

    return {
        "cpu_s": round(used.hub_cpu, 3), "cpu_s_per_1m": per_1m(used.hub_cpu),
        "redis_cpu_s_per_1m": per_1m(used.redis_cpu) if w.with_redis else None,
        "rss_before_mib": round(w.rss0 / 2**20, 1), "rss_idle_mib": round(w.rss1 / 2**20, 1),
        "rss_per_sub_kib": round((w.rss1 - w.rss0) / max(tally.subscribed, 1) / 1024, 2),
        "redis_clients": w.redis_clients,
        "loadgen_cpu_pct": round(used.own_cpu / w.seconds * 100, 1),
        "hub_core_busy_pct": used.hub_core_busy_pct,
        "load_core_busy_pct": used.load_core_busy_pct, "steal_pct": used.steal_pct,
    }


def split_by_windows(at: Sequence[float], latency: Sequence[float],
                     windows: Sequence[tuple[float, float]], drain: float
                     ) -> tuple[list[float], list[float]]:
    """(latencies read while publishing, latencies read while not): ``windows`` are the
    publishing windows (start, end), each followed by a quiet one until the next start (the
    last: as long as the one before it). A publish goes on being delivered after its window,
    so ``drain`` s after each end count as publishing. Tokens read before the first window
    (the streams' ramp) or after the last quiet one count for neither."""
    on: list[float] = []
    off: list[float] = []
    if not windows:
        return on, off
    last = windows[-1]
    edges = [*(w[0] for w in windows[1:]), last[1] + (last[1] - last[0])]
    for t, lat in zip(at, latency, strict=True):
        for (start, end), next_start in zip(windows, edges, strict=True):
            if start <= t < end + drain:
                on.append(lat)
                break
            if end + drain <= t < next_start:
                off.append(lat)
                break
    return on, off
