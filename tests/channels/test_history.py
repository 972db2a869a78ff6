"""The in-memory history: its bounds (events, age, channels) and the replay rule, on a fake
clock."""

from __future__ import annotations

from relay.channels.events import OVERHEAD, parse_id
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


def _size(h: Histories, channel: str) -> list[int]:
    return [len(e.framed) + OVERHEAD for e in h.replay(channel, None, True, 1.0).events]


def test_a_channel_keeps_at_most_history_bytes_the_oldest_going_first() -> None:
    h = Histories(ChannelLimits(history_bytes=10_000))
    ids = [h.publish("c", "x" * 1000, None, 1.0).id for _ in range(30)]
    replay = h.replay("c", None, True, 1.0)
    kept = [e.id for e in replay.events]
    assert kept == ids[-7:]  # ~1,350 bytes each: 7 fit in 10,000
    assert sum(_size(h, "c")) == h.bytes <= 10_000
    assert h.replay("c", parse_id(ids[0]), True, 1.0).reset  # evicted: a reset, then all held


def test_all_channels_keep_at_most_memory_bytes_least_recently_published_first_out() -> None:
    h = Histories(ChannelLimits(memory=15_000))
    for channel in ("a", "b", "c", "d"):
        _publish(h, 5, 1.0, channel)  # (~350 bytes each: 7 KB)
    big = [h.publish("e", "x" * 2000, None, 2.0).id for _ in range(5)]  # ~11.8 KB more
    assert 14_000 < h.bytes <= 15_000
    for gone in "ab":  # the channels published to least recently lost their events first
        assert h.replay(gone, None, True, 3.0).events == []
    assert len(h.replay("d", None, True, 3.0).events) == 5
    assert [e.id for e in h.replay("e", None, True, 3.0).events] == big
    assert h.bytes == sum(sum(_size(h, c)) for c in "abcde")
    h.publish("f", "x" * 30_000, None, 4.0)  # alone over the budget: nothing is left
    assert h.bytes == len(h) == 0


def test_evicting_a_channel_or_expiring_events_gives_their_bytes_back() -> None:
    h = Histories(ChannelLimits(max_channels=1, ttl=60))
    _publish(h, 3, 1.0, "a")
    _publish(h, 2, 2.0, "b")  # a is evicted
    assert h.bytes == sum(_size(h, "b")) > 0
    assert h.replay("b", None, True, 100.0).events == [] and h.bytes == 0  # expired


def test_ids_never_repeat_on_a_channel_evicted_within_one_millisecond() -> None:
    """--max-channels 1, publishes to A, A, B, A, A in one millisecond: A's new ids are past
    its old ones, so a subscriber holding one gets a reset, never a silent skip."""
    h = Histories(ChannelLimits(max_channels=1))
    first = [h.publish(c, c, None, 1000.0).key for c in "AAB"]
    later = [h.publish(c, c, None, 1000.0).key for c in "AA"]
    assert later[0] > max(first)
    assert h.replay("A", first[1], True, 1000.0).reset  # its old position is not held
    assert len({*first, *later}) == 5
