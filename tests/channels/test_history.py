"""The in-memory history: its bounds (events, age, channels) and the replay rule, on a fake
clock."""

from __future__ import annotations

from relay.channels.events import parse_id
from relay.channels.history import Histories
from relay.config import ChannelLimits


def _publish(h: Histories, n: int, now: float, channel: str = "c") -> list[str]:
    return [h.publish(channel, f"e{i}", None, now).id for i in range(n)]


def test_replay_after_a_held_id_is_exact() -> None:
    h = Histories(ChannelLimits())
    ids = _publish(h, 5, 1000.0)
    replay = h.replay("c", parse_id(ids[1]), True, 1000.0)
    assert [e.id for e in replay.events] == ids[2:] and not replay.reset
    assert h.replay("c", parse_id(ids[-1]), True, 1000.0).events == []
    fresh = h.replay("c", None, False, 1000.0)  # no Last-Event-ID: live events only
    assert fresh.events == [] and not fresh.reset


def test_an_id_no_longer_held_gives_a_reset_then_all_that_is_held() -> None:
    h = Histories(ChannelLimits(history=3))
    ids = _publish(h, 6, 1000.0)
    for position in (parse_id(ids[0]), parse_id("1-0"), None):  # trimmed, unknown, malformed
        replay = h.replay("c", position, True, 1000.0)
        assert replay.reset and [e.id for e in replay.events] == ids[3:]
        assert replay.oldest == ids[3]
    unknown = h.replay("nobody-published-here", parse_id(ids[0]), True, 1000.0)
    assert unknown.reset and unknown.events == [] and len(h) == 1  # nothing created


def test_events_expire_after_the_ttl_but_ids_keep_growing() -> None:
    h = Histories(ChannelLimits(ttl=60))
    old = _publish(h, 2, 1000.0)
    assert len(h.replay("c", parse_id(old[0]), True, 1059.9).events) == 1
    replay = h.replay("c", parse_id(old[0]), True, 1060.1)
    assert replay.reset and replay.events == []
    [new] = _publish(h, 1, 1060.2)
    assert parse_id(new) > parse_id(old[-1])  # type: ignore[operator]


def test_at_most_max_channels_histories_least_recently_published_first_out() -> None:
    h = Histories(ChannelLimits(max_channels=2))
    _publish(h, 1, 1.0, "a")
    _publish(h, 1, 2.0, "b")
    _publish(h, 1, 3.0, "a")  # a is now the most recent
    _publish(h, 1, 4.0, "c")  # b goes
    assert len(h) == 2
    assert h.replay("b", None, True, 5.0).events == []
    assert len(h.replay("a", None, True, 5.0).events) == 2
