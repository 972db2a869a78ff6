"""Deadlines on the fake clock: the pool's shared tick and the client connection's one timer."""

from __future__ import annotations

from relay.net.deadlines import Deadlines, Timer

from ..support import FakeLoop


class Member:
    def __init__(self, deadlines: Deadlines, expire_after: int) -> None:
        self.calls: list[float] = []
        self.deadlines = deadlines
        self.expire_after = expire_after

    def check_deadline(self, now: float) -> None:
        self.calls.append(now)
        if len(self.calls) >= self.expire_after:
            self.deadlines.discard(self)


def test_tick_checks_every_member_and_stops_when_empty(fake_loop: FakeLoop) -> None:
    deadlines = Deadlines(fake_loop, 0.25)  # type: ignore[arg-type]
    start = fake_loop.time()
    a, b = Member(deadlines, 2), Member(deadlines, 4)
    deadlines.add(a)
    deadlines.add(b)
    fake_loop.advance(0.249)
    assert a.calls == b.calls == []
    fake_loop.advance(10)
    assert a.calls == [start + 0.25, start + 0.5]
    assert b.calls == [start + 0.25 * n for n in (1, 2, 3, 4)]
    assert len(deadlines) == 0 and fake_loop.pending == []  # no tick left with no members


def test_close_cancels_the_tick(fake_loop: FakeLoop) -> None:
    deadlines = Deadlines(fake_loop, 0.01)  # type: ignore[arg-type]
    member = Member(deadlines, 100)
    deadlines.add(member)
    deadlines.close()
    fake_loop.advance(1)
    assert member.calls == [] and len(deadlines) == 0


def test_a_timer_fires_once_at_its_time_and_rearming_replaces_it(fake_loop: FakeLoop) -> None:
    fired: list[str] = []
    timer = Timer(fake_loop)  # type: ignore[arg-type]
    timer.arm(10, lambda: fired.append("first"))
    fake_loop.advance(9)
    timer.arm(10, lambda: fired.append("second"))  # replaces the first: 10 s from now
    fake_loop.advance(9.999)
    assert fired == [] and timer.armed
    fake_loop.advance(0.001)
    assert fired == ["second"] and not timer.armed
    fake_loop.advance(100)
    assert fired == ["second"]
    timer.arm(1, lambda: fired.append("cancelled"))
    timer.cancel()
    fake_loop.advance(5)
    assert fired == ["second"] and not timer.armed


def test_rearming_later_keeps_one_loop_timer_and_fires_at_the_new_time(
        fake_loop: FakeLoop) -> None:
    fired: list[float] = []
    timer = Timer(fake_loop)  # type: ignore[arg-type]
    start = fake_loop.time()
    timer.arm(75, lambda: fired.append(fake_loop.time()))
    for _ in range(100):  # a keep-alive connection: an answer, the idle deadline again
        fake_loop.advance(1)
        timer.cancel()
        timer.arm(75, lambda: fired.append(fake_loop.time()))
    assert len(fake_loop.pending) == 1  # one loop timer all along
    fake_loop.advance(74.999)
    assert fired == []
    fake_loop.advance(0.001)
    assert fired == [start + 175]
    timer.arm(75, lambda: fired.append(-1))
    timer.arm(5, lambda: fired.append(fake_loop.time()))  # earlier: the loop timer is replaced
    fake_loop.advance(5)
    assert fired == [start + 175, start + 180] and not timer.armed


def test_stop_takes_the_loop_timer_away(fake_loop: FakeLoop) -> None:
    timer = Timer(fake_loop)  # type: ignore[arg-type]
    timer.arm(60, lambda: None)
    timer.cancel()
    assert len(fake_loop.pending) == 1  # (cancel only forgets the callback)
    timer.stop()
    assert fake_loop.pending == [] and not timer.armed
