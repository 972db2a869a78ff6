"""Statistics the benches share: nearest-rank percentiles and seconds as milliseconds."""

from __future__ import annotations

from collections.abc import Sequence


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles of ``values``, one sort for all of ``qs``; None for each when
    there are no values. The rank of q is ``int(q / 100 * n)``, capped at the largest."""
    if not len(values):
        return [None for _ in qs]
    ordered = sorted(values)
    return [float(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]) for q in qs]


def percentile(values: Sequence[float], q: float) -> float | None:
    """One nearest-rank percentile (``percentiles`` with a single q)."""
    return percentiles(values, (q,))[0]


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded to the microsecond; None stays None."""
    return None if seconds is None else round(seconds * 1000, 3)
