"""Prometheus text exposition (format 0.0.4), written by hand."""

from __future__ import annotations

from relay.ops.metrics import Counter, Histogram, Registry


def test_registry_text_format() -> None:
    r = Registry()
    c: Counter = r.counter("x_total", "A count.", ["k"])
    c.inc(2, ('a"b\\c\nd',))
    h: Histogram = r.histogram("lat_seconds", "Latency.")
    h.observe(0.003)
    h.observe(7)
    text = r.render().decode()
    assert '# TYPE x_total counter\nx_total{k="a\\"b\\\\c\\nd"} 2\n' in text
    assert 'lat_seconds_bucket{le="0.0025"} 0\nlat_seconds_bucket{le="0.005"} 1\n' in text
    assert 'lat_seconds_bucket{le="+Inf"} 2\nlat_seconds_sum 7.003\nlat_seconds_count 2\n' in text
