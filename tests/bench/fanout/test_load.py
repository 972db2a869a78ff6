"""bench/fanout/load.py: a subscriber counts every event whatever its reads' boundaries."""

from __future__ import annotations

import asyncio
import time

from bench.fanout.load import Load, Published, Subscriber
from bench.fanout.wire import Tally

from .streams import HEAD, stream


def _feed(pieces: list[bytes]) -> tuple[Tally, int]:
    loop = asyncio.new_event_loop()
    try:
        tally = Tally()
        ready: asyncio.Future[int] = loop.create_future()
        sub = Subscriber(b"", 0, tally, ready)
        for piece in pieces:
            sub.data_received(piece)
        return tally, ready.result()
    finally:
        loop.close()


def test_subscriber_counts_every_event_whatever_the_read_boundaries() -> None:
    sent = [time.time() - 0.001 * k for k in range(5)]
    whole = HEAD + stream(sent)
    for cut in range(1, len(whole)):  # every split into two reads
        tally, status = _feed([whole[:cut], whole[cut:]])
        assert status == 200 and tally.received == 5 and tally.bad == 0, cut
    tally, _ = _feed([whole[i:i + 1] for i in range(len(whole))])  # byte by byte
    assert tally.received == 5 and tally.subscribed == 1 and tally.live == [1]


def test_subscriber_reports_a_refusal() -> None:
    tally, status = _feed([b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"])
    assert status == 404 and tally.subscribed == 0


def test_a_load_publishes_its_rate_over_the_subscribers_per_channel() -> None:
    assert Load(1000, 10, 30_000, 20, 200, 2).publish_rate == 3000


def test_published_counts_add_up() -> None:
    total = Published(seconds=0.0)
    total.add(Published(sent=3, ok=2, errors=1, expected=20))
    total.add(Published(sent=1, ok=1, expected=10))
    assert (total.sent, total.ok, total.errors, total.expected) == (4, 3, 1, 30)
