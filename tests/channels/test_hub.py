"""The hub and its subscribers alone, on fake transports and the fake clock: slices, order,
catch-up without loss or repeat, heartbeats, and the drop of subscribers that cannot keep up."""

from __future__ import annotations

from relay.channels.events import ChannelEvent
from relay.channels.hub import STEP, Hub
from relay.channels.subscriber import Subscriber
from relay.config import ChannelLimits
from relay.http1.messages import Request
from relay.http1.sse import HEARTBEAT
from relay.net.exchange import Exchange
from relay.net.flow import WriteFlow

from ..support import FakeLoop, FakeTransport
from ..support.sse_parser import SSEParser

LIMITS = ChannelLimits(slice=3, heartbeat=10, stall=4, slow_buffer=1000)


class _Owner:
    def exchange_ended(self, ex: Exchange) -> None:
        pass


def _subscriber(hub: Hub, channel: str = "c", version: bytes = b"1.1",
                ended: list[str] | None = None,
                transport: FakeTransport | None = None) -> tuple[Subscriber, FakeTransport]:
    transport = transport or FakeTransport()
    request = Request(b"GET", b"/events/" + channel.encode(), [], version,
                      keep_alive=version == b"1.1")
    ex = Exchange(_Owner(), request, transport, WriteFlow())  # type: ignore[arg-type]
    ex.start(200, [(b"content-type", b"text/event-stream")])
    transport.take()
    log = ended if ended is not None else []
    sub = Subscriber(ex, channel, LIMITS.slow_buffer, lambda _s, how: log.append(how))
    hub.add(sub)
    return sub, transport


def unchunked(body: bytes) -> bytes:
    """The payload of chunks (size line, payload, CRLF), as the subscribers write them."""
    payload, pos = b"", 0
    while pos < len(body):
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        payload += body[eol + 2:eol + 2 + size]
        pos = eol + 4 + size
    return payload


def _ids(transport: FakeTransport) -> list[str]:
    return [e.id for e in SSEParser().feed(unchunked(transport.take()))]


def _event(n: int) -> ChannelEvent:
    return ChannelEvent((n, 0), f"event {n}")


def test_fan_out_goes_in_slices_in_order(fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    subs = [_subscriber(hub) for _ in range(5)]
    for sub, _ in subs:
        sub.catch_up([], False, None)
    assert hub.deliver("c", _event(1)) == 5 and hub.deliver("c", _event(2)) == 5
    assert all(t.out == b"" for _, t in subs)  # more than a slice: nothing inside deliver()
    fake_loop.run_soon()
    assert [_ids(t) for _, t in subs] == [["1-0", "2-0"]] * 5
    assert hub.stats.deliveries == 10


def test_a_channel_within_one_slice_is_written_at_once_unless_slices_wait(
        fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    big = [_subscriber(hub, "big") for _ in range(5)]
    small = [_subscriber(hub, "small") for _ in range(3)]
    for sub, _ in big + small:
        sub.catch_up([], False, None)
    assert hub.deliver("small", _event(1)) == 3
    assert [_ids(t) for _, t in small] == [["1-0"]] * 3  # inside deliver(), no loop turn
    hub.deliver("big", _event(2))
    hub.deliver("small", _event(3))  # slices wait: queued behind them, in order
    assert all(t.out == b"" for _, t in small)
    fake_loop.run_soon()
    assert [_ids(t) for _, t in small] == [["3-0"]] * 3
    assert [_ids(t) for _, t in big] == [["2-0"]] * 5
    assert hub.stats.deliveries == 3 + 5 + 3


def test_one_turn_of_the_loop_writes_at_most_a_slice(fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    subs = [_subscriber(hub) for _ in range(7)]
    for sub, _ in subs:
        sub.catch_up([], False, None)
    hub.deliver("c", _event(1))
    assert _turns(fake_loop, subs) == [3, 6, 7]  # slices of 3, the loop free between them


def _turns(fake_loop: FakeLoop, subs: list[tuple[Subscriber, FakeTransport]]) -> list[int]:
    """Run the loop's ready callbacks one turn at a time: subscribers written after each."""
    turns = []
    while fake_loop._soon:
        batch, fake_loop._soon = fake_loop._soon, []
        for handle in batch:
            handle.callback(*handle.args)
        turns.append(sum(1 for _, t in subs if t.out))
    return turns


def test_one_turn_of_the_loop_writes_for_at_most_the_slice_time(fake_loop: FakeLoop) -> None:
    # Writes as slow as the clock says: it moves 1 ms each time the hub reads it (once per
    # turn's start, then every STEP writes), so a 2 ms slice ends after 2 x STEP writes.
    ms = [0.0]

    def clock() -> float:
        ms[0] += 0.001
        return ms[0]

    limits = ChannelLimits(slice=1000, slice_time=0.002)
    hub = Hub(fake_loop, limits, clock=clock)  # type: ignore[arg-type]
    subs = [_subscriber(hub) for _ in range(5 * STEP + 3)]
    for sub, _ in subs:
        sub.catch_up([], False, None)
    hub.deliver("c", _event(1))
    assert _turns(fake_loop, subs) == [2 * STEP, 4 * STEP, 5 * STEP + 3]
    assert all(_ids(t) == ["1-0"] for _, t in subs)


def test_silent_channels_get_heartbeats_at_their_period(fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    (sub, transport), (busy, busy_t) = _subscriber(hub, "quiet"), _subscriber(hub, "busy")
    sub.catch_up([], False, None)
    busy.catch_up([], False, None)
    for t in range(1, 10):
        fake_loop.advance(1)
        hub.deliver("busy", _event(t))
    assert HEARTBEAT not in transport.out
    fake_loop.advance(1)  # 10 s of silence on "quiet" (the tick runs every 2 s)
    fake_loop.run_soon()
    assert HEARTBEAT in transport.take() and HEARTBEAT not in busy_t.take()
    assert hub.stats.heartbeats == 1


def test_slow_subscribers_are_dropped_others_go_on(fake_loop: FakeLoop) -> None:
    hub = Hub(fake_loop, LIMITS)  # type: ignore[arg-type]
    ended: list[str] = []
    over, over_t = _subscriber(hub, ended=ended)
    stalled, stalled_t = _subscriber(hub, ended=ended)
    fine, fine_t = _subscriber(hub, ended=ended)
    for sub in (over, stalled, fine):
        sub.catch_up([], False, None)
    over.on_client_paused()
    over_t.buffered = 2000  # over the bound (1000)
    stalled.on_client_paused()  # paused, its buffer under the bound, but it takes nothing
    hub.deliver("c", _event(1))
    fake_loop.run_soon()
    assert over_t.aborted and ended == ["slow_subscriber"]  # at once
    fake_loop.advance(3.9)
    assert not stalled_t.aborted
    fake_loop.advance(2.1)  # paused 4 s: dropped at the next tick
    assert stalled_t.aborted and ended == ["slow_subscriber", "slow_subscriber"]
    hub.deliver("c", _event(2))
    fake_loop.run_soon()
    assert _ids(fine_t) == ["1-0", "2-0"] and hub.stats.dropped == 2 and hub.subscribers == 1
    assert hub.paused == set()  # (the tick looks at paused subscribers only)
    fine.on_client_paused()
    fine.on_client_resumed()  # it took its bytes again before the stall time: it stays
    fake_loop.advance(10)
    assert not fine_t.aborted and hub.paused == set() and hub.subscribers == 1


def test_first_and_last_subscribers_are_announced(fake_loop: FakeLoop) -> None:
    seen: list[str] = []
    hub = Hub(fake_loop, LIMITS, on_first=lambda c: seen.append("+" + c),  # type: ignore[arg-type]
              on_last=lambda c: seen.append("-" + c))
    a, _ = _subscriber(hub)
    b, _ = _subscriber(hub)
    a.on_client_gone()
    assert seen == ["+c"]
    b.close()
    assert seen == ["+c", "-c"] and hub.count("c") == 0
