"""The shared budget for request bodies held in memory: alone, and over real sockets."""

from __future__ import annotations

import contextlib
import socket

from relay.app import Relay
from relay.config import MIB, Limits
from relay.net.budget import BodyBudget, Hold

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    H11Client,
    Received,
    answering,
    chat_body,
    connect,
    publish,
    read_until_close,
    scrape,
    wait_until,
)
from ..support.processes import rss_bytes, spawn

HELD = "relay_request_body_bytes_held"


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
    holder.sendall(head + b"x" * 59_990)  # holds what it sent, not what it declared
    assert wait_until(lambda: _used(relay) == 59_990)
    declarer = connect(relay.port)
    declarer.sendall(head)  # declares 60,000 more, holds nothing: not refused
    refused = connect(relay.port)
    refused.sendall(head + b"y" * 40_000)
    assert wait_until(lambda: _used(relay) == 99_990)
    refused.sendall(b"y" * 11)  # 100,001 received bytes would be held: refused
    reply = read_until_close(refused)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"\r\nretry-after: 1\r\n" in reply
    assert b"max-body-memory" in reply and b'"error"' in reply
    assert wait_until(lambda: _used(relay) == 59_990)  # its bytes given back with the close
    chunked = connect(relay.port)
    chunked.sendall(b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
                    + b"7530\r\n" + b"c" * 30_000 + b"\r\n")  # fits: 89,990 held
    chunked.sendall(b"7530\r\n" + b"c" * 30_000 + b"\r\n")  # does not: 119,990
    assert read_until_close(chunked).startswith(b"HTTP/1.1 503 ")
    holder.sendall(b"x" * 10)
    assert H11Client(holder).read_reply().status == 200
    assert wait_until(lambda: _used(relay) == 0)  # given back when the exchange ended
    declarer.sendall(b"z" * 60_000)  # the declarer, all along in time, is served
    assert H11Client(declarer).read_reply().status == 200
    assert [len(r.body) for r in received] == [60_000, 60_000]


def _declare(port: int, length: int, sent: bytes) -> socket.socket:
    """A chat POST that declares ``length`` body bytes and sends ``sent`` of them."""
    sock = connect(port)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                 b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % length
                 + sent)
    return sock


def _silent(sock: socket.socket) -> bool:
    """Nothing came back on ``sock`` and it is still open (no answer, no close)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)
    return False


def test_declared_lengths_lock_no_one_out() -> None:
    """The issue's lockout, at the defaults (--max-body-memory 256 MiB): 16 uploads that each
    declare 16 MiB and send one byte hold 16 bytes, not the whole budget, so another client's
    chat and publish are answered while the 16 still hold their connections."""
    with spawn("serve", "--port", "0", "--access-log", "off") as (_proc, port, _lines):
        slow = [_declare(port, 16 * MIB, b"{") for _ in range(16)]
        assert wait_until(lambda: scrape(port).get(HELD) == 16)
        chat = H11Client(connect(port))
        chat.send(b"POST", b"/v1/chat/completions", chat_body(stream=False),
                  [(b"content-type", b"application/json")])
        assert chat.read_reply().status == 200
        assert publish(port, "x", "hello").status == 200
        assert all(_silent(sock) for sock in slow)  # still reading their bodies
        assert scrape(port)[HELD] == 16


def test_received_bodies_stay_within_the_budget_in_memory() -> None:
    """16 uploads that each declare 16 MiB and send 1 MiB are all held (16 MiB of a 32 MiB
    budget: none refused); sending 7 MiB more each (128 MiB in all), those whose bytes would
    pass the budget get 503, the gauge never passes it and the RSS grows by at most the budget
    plus ALLOWANCE (allocator slack, the relay's own buffers)."""
    budget, allowance = 32 * MIB, 16 * MIB
    with spawn("serve", "--port", "0", "--access-log", "off", "--max-body-memory",
               str(budget)) as (proc, port, _lines):
        scrape(port)
        before = rss_bytes(proc.pid)
        uploads = [_declare(port, 16 * MIB, b"x" * MIB) for _ in range(16)]
        assert wait_until(lambda: scrape(port).get(HELD) == 16 * MIB)
        assert all(_silent(sock) for sock in uploads)  # none refused: what is held fits
        peak = rss_bytes(proc.pid)
        refused = 0
        for sock in uploads:
            with contextlib.suppress(OSError):  # (refused meanwhile: the relay closed it)
                sock.sendall(b"x" * (7 * MIB))
            peak = max(peak, rss_bytes(proc.pid))
            assert scrape(port)[HELD] <= budget
        for sock in uploads:
            sock.settimeout(5)
            if not _silent(sock):
                assert read_until_close(sock).startswith(b"HTTP/1.1 503 ")  # (no reset)
                refused += 1
        assert refused >= 12  # at most 4 whole 8 MiB uploads fit in 32 MiB
        assert peak - before <= budget + allowance, f"RSS +{(peak - before) / MIB:.1f} MiB"


def _used(relay: Relay) -> int:
    assert relay.budget is not None
    return relay.budget.used


def test_a_body_of_one_byte_chunks_holds_what_the_budget_counts() -> None:
    """The finding: a chunked body sent as 1-byte chunks was held as one bytes object per
    chunk (~85 bytes of memory per body byte), so 3M chunks grew the RSS by 244 MiB while
    the gauge said 3 MB. Now 200,000 one-byte chunks, never ended, are held as about 200 KB
    (as a bytes object each: ~17 MiB). Sent in batches, each counted before the next, so the
    relay (slow at one-byte chunks, more so under coverage on a busy machine) never has a
    backlog that would keep a scrape waiting."""
    chunks, batch, allowance = 200_000, 10_000, 8 * MIB
    with spawn("serve", "--port", "0", "--access-log", "off", "--max-body-memory",
               str(MIB)) as (proc, port, _lines):
        scrape(port)
        before = rss_bytes(proc.pid)
        sock = connect(port)
        sock.sendall(b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        for sent in range(batch, chunks + 1, batch):
            sock.sendall(b"1\r\nx\r\n" * batch)
            assert wait_until(lambda sent=sent: scrape(port).get(HELD) == sent, timeout=30)
        grown = rss_bytes(proc.pid) - before
        assert _silent(sock)  # held, not refused: the last chunk never came
        assert grown <= MIB + allowance, f"RSS +{grown / MIB:.1f} MiB"
