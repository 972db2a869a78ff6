"""bench/soak.py: each kind's stream and what counts as its right outcome."""

from __future__ import annotations

import random

from bench.soak import KINDS, stream_shape, whole_outcome


def test_every_kind_asks_the_mock_for_its_behaviour() -> None:
    rng = random.Random(1)
    shapes = {kind: stream_shape(kind, rng) for kind in KINDS}
    assert "x-mock-fail-after" in shapes["upstream_cut"][1]
    assert shapes["upstream_error"][1]["x-mock-status"] in ("500", "429")
    assert shapes["leaves_early"][1]["x-mock-ttft-ms"] == "500"
    assert shapes["slow_reader"] == (20_000, {"x-mock-delay-ms": "0"})
    assert 20 <= shapes["complete"][0] <= 200


def test_a_whole_stream_is_ok_only_with_the_ending_its_kind_needs() -> None:
    done = b"HTTP/1.1 200 OK\r\n\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
    cut = b'HTTP/1.1 200 OK\r\n\r\ndata: {"error": {}}\n\n\r\n0\r\n\r\n'
    assert whole_outcome("complete", done) == "ok"
    assert whole_outcome("complete", done[:-5]) == "incomplete"
    assert whole_outcome("upstream_cut", cut) == "ok"
    assert whole_outcome("upstream_cut", done) == "cut stream without an error event"
    assert whole_outcome("upstream_error", b"HTTP/1.1 429 Too Many") == "ok"
    assert whole_outcome("upstream_error", done) == "bad status"
