"""One subscriber: catch-up (live events held back during the replay, then sent once), the
reset, and HTTP/1.0 clients."""

from __future__ import annotations

from relay.channels.hub import Hub
from relay.net.exchange import ExchangeState

from ..support import FakeLoop
from .test_hub import LIMITS, _event, _ids, _subscriber


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
