"""One subscriber: catch-up (live events held back during the replay, then sent once), the
reset, HTTP/1.0 clients, and the counts of what it was sent."""

from __future__ import annotations

from relay.channels.hub import Hub
from relay.net.exchange import ExchangeState

from ..support import FakeLoop, FakeTransport
from ..support.sse_parser import SSEParser
from .test_hub import LIMITS, _event, _ids, _subscriber, unchunked


def test_catch_up_loses_nothing_and_repeats_nothing(fake_loop: FakeLoop) -> None:
    """Registered first, the subscriber receives live events while its replay is read; they
    wait, and go out after the replay, minus those the replay already had."""
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    sub, transport = _subscriber(hub)
    hub.deliver("c", _event(3))  # published while the replay was being read...
    hub.deliver("c", _event(4))
    fake_loop.run_soon()
    assert transport.out == b""  # ...held back
    sub.catch_up([_event(2), _event(3)], False, None)  # the replay, which already has 3
    assert _ids(transport) == ["2-0", "3-0", "4-0"]
    hub.deliver("c", _event(5))
    fake_loop.run_soon()
    assert _ids(transport) == ["5-0"]

def test_an_event_the_replay_had_and_still_on_its_way_is_not_repeated(
        fake_loop: FakeLoop) -> None:
    """The replay can be ahead of the live events: with Redis, an event's pub/sub message may
    come after the replay's answer (two connections), and a fan-out slice queued before the
    replay may still hold it. The subscriber takes the fast path (no id check) only once a
    live event newer than its replay has come."""
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    sub, transport = _subscriber(hub)
    others = [_subscriber(hub) for _ in range(4)]  # (more than a slice: slices are queued)
    for other, _ in others:
        other.catch_up([], False, None)
    hub.deliver("c", _event(3))  # queued for everyone, the new subscriber included
    sub.catch_up([_event(2), _event(3), _event(4)], False, None)  # the replay ran ahead
    assert _ids(transport) == ["2-0", "3-0", "4-0"] and not sub.fast
    fake_loop.run_soon()  # the queued slice: 3 again, dropped
    hub.deliver("c", _event(4))  # the live message of what the replay already sent
    hub.deliver("c", _event(5))  # the first newer one: from here on, the fast path
    fake_loop.run_soon()
    assert _ids(transport) == ["5-0"] and sub.fast
    hub.deliver("c", _event(6))
    fake_loop.run_soon()
    assert _ids(transport) == ["6-0"]
    assert [_ids(t) for _, t in others] == [["3-0", "4-0", "5-0", "6-0"]] * 4


def test_a_lost_position_starts_with_a_reset(fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    sub, transport = _subscriber(hub)
    sub.catch_up([_event(7)], True, "7-0")
    body = transport.take()
    assert body.index(b"relay.reset") < body.index(b"id: 7-0")

def test_http10_subscribers_get_the_events_unframed(fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    sub, transport = _subscriber(hub, version=b"1.0")
    sub.catch_up([], False, None)
    assert not sub.fast
    hub.deliver("c", _event(1))
    fake_loop.run_soon()
    assert transport.take() == _event(1).raw
    sub.close()
    assert sub._ex.state is ExchangeState.ENDED


class _PausingTransport(FakeTransport):
    """Pauses its protocol inside the write that passes ``high`` bytes, as uvloop's does."""

    def __init__(self, high: int) -> None:
        super().__init__()
        self.high, self.on_pause = high, lambda: None

    def write(self, data: bytes) -> None:
        before = len(self.out)
        super().write(data)
        if before <= self.high < len(self.out):
            self.on_pause()


def _events_in(body: bytes) -> int:
    return len([e for e in SSEParser().feed(unchunked(body)) if e.data])


def test_the_counts_are_what_the_client_was_sent_by_every_path(fake_loop: FakeLoop) -> None:
    """Bytes and events sent (what its access-log line says), through the replay and its reset,
    runs of fast writes, a pause inside a fast write (the slow path meanwhile), a resume, a
    heartbeat (bytes, not an event) and the end: always the client's own count of its bytes."""
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    transport = _PausingTransport(high=400)
    sub, _ = _subscriber(hub, transport=transport)
    others = [_subscriber(hub) for _ in range(4)]  # (more than a slice: some writes queued)
    transport.on_pause = sub.on_client_paused

    def check() -> None:
        assert sub.counts() == (len(transport.out), _events_in(bytes(transport.out)))

    hub.deliver("c", _event(2))  # held back while the replay is read
    sub.catch_up([_event(1)], True, "1-0")
    check()
    for n in range(3, 12):  # fast writes; one of them passes 400 bytes and pauses the client
        hub.deliver("c", _event(n))
        fake_loop.run_soon()
        check()
    assert not sub.fast and sub.paused_since is not None
    sub.on_client_resumed()
    for n in range(12, 15):
        hub.deliver("c", _event(n))
        fake_loop.run_soon()
        check()
    assert sub.fast
    sub.heartbeat(b"3\r\n:\n\n\r\n")
    check()
    sub.close()
    assert sub.counts()[1] == 14 + 1  # the events and the reset
    check()
    assert [other.counts()[1] for other, _ in others] == [0] * 4  # never caught up: nothing
