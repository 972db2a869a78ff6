"""The shared budget for request bodies held in memory: alone, and over real sockets."""

from __future__ import annotations

from relay.app import Relay
from relay.config import Limits
from relay.net.budget import BodyBudget, Hold

from ..conftest import RelayFactory, ScriptedFactory
from ..support import H11Client, Received, answering, connect, read_until_close, wait_until


def test_holds_take_and_give_back() -> None:
    budget = BodyBudget(100)
    a, b = Hold(budget), Hold(budget)
    assert a.take(60) and not b.take(41) and b.take(40)
    assert budget.used == 100 and not a.take(1)
    a.release()
    assert budget.used == 40 and a.held == 0
    a.release()  # twice: nothing more
    assert budget.used == 40


def test_bodies_beyond_the_budget_get_503_and_nothing_goes_upstream(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url,
                       limits=Limits(max_body_memory=100_000, max_body_size=80_000))
    head = b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 60000\r\n\r\n"
    holder = connect(relay.port)
    holder.sendall(head + b"x" * 100)  # holds 60,000 bytes of the budget while it sends
    assert wait_until(lambda: _used(relay) == 60_000)
    refused = connect(relay.port)
    refused.sendall(head)  # 60,000 more do not fit: refused before a byte of the body is read
    reply = read_until_close(refused)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"\r\nretry-after: 1\r\n" in reply
    assert b"max-body-memory" in reply
    chunked = connect(relay.port)
    chunked.sendall(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
                    + b"7530\r\n" + b"c" * 30_000 + b"\r\n")  # fits: 90,000 held
    chunked.sendall(b"7530\r\n" + b"c" * 30_000 + b"\r\n")  # does not: 120,000
    assert read_until_close(chunked).startswith(b"HTTP/1.1 503 ")
    holder.sendall(b"x" * 59_900)
    assert H11Client(holder).read_reply().status == 200
    assert wait_until(lambda: _used(relay) == 0)  # given back when the exchange ended
    again = H11Client(connect(relay.port))  # and the refused request, retried, is served
    again.send(b"POST", b"/v1/x", b"y" * 60_000)
    assert again.read_reply().status == 200
    assert [len(r.body) for r in received] == [60_000, 60_000]


def _used(relay: Relay) -> int:
    assert relay.budget is not None
    return relay.budget.used
