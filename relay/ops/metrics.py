"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges, histograms.

Nothing here runs per event. The hot path keeps plain integer attributes on its own objects
(bytes and events per upstream connection, channel subscriber, resumed reader); a stream adds
them here once, when it ends. Gauges that mirror live state (open connections, pool size) are
read at scrape time through callables, so they cost nothing between scrapes.

    relay_requests_total{route="/v1",status="200"} 3
    relay_upstream_ttfb_seconds_bucket{le="0.1"} 2

Label values are escaped as the format says (backslash, double quote, newline).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

LabelValues = tuple[str, ...]

# Latency buckets in seconds, from a loopback round trip to a long reasoning pause.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0, 300.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class Metric:
    """A named metric: ``render()`` gives its sample lines, ``header()`` its HELP and TYPE."""

    kind = "untyped"

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_, tuple(labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    """A monotonic count per label-value tuple."""

    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_, labels)
        self.values: dict[LabelValues, float] = {} if labels else {(): 0}

    def inc(self, amount: float = 1, labels: LabelValues = ()) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def render(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}"
                for k, v in sorted(self.values.items())]


class Gauge(Metric):
    """A value read at scrape time from ``read`` (live state is never copied on the hot path)."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_)
        self.read = read

    def render(self) -> list[str]:
        return [f"{self.name} {_number(self.read())}"]


class CounterFrom(Gauge):
    """A counter kept elsewhere (the pool's reuse count...), read at scrape time."""

    kind = "counter"


class Histogram(Metric):
    """Cumulative buckets, a sum and a count (no labels: one distribution per metric)."""

    kind = "histogram"

    def __init__(self, name: str, help_: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help_)
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Registry:
    """The relay's metrics, in the order they are registered."""

    def __init__(self) -> None:
        self._metrics: list[Metric] = []

    def counter(self, name: str, help_: str, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_, labels)
        self._metrics.append(metric)
        return metric

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> Gauge:
        metric = Gauge(name, help_, read)
        self._metrics.append(metric)
        return metric

    def counter_from(self, name: str, help_: str, read: Callable[[], float]) -> CounterFrom:
        metric = CounterFrom(name, help_, read)
        self._metrics.append(metric)
        return metric

    def histogram(self, name: str, help_: str,
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        metric = Histogram(name, help_, buckets)
        self._metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header()
            lines += metric.render()
        return ("\n".join(lines) + "\n").encode()


CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
