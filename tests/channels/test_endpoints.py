"""Channels over real sockets, one relay (the memory broker): subscribe, publish, ids, replay by
Last-Event-ID (header or query), resets, tokens, bad input, slow subscribers, metrics."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from relay.channels.broker import MemoryBroker
from relay.channels.events import EventKey
from relay.channels.history import Replay
from relay.config import KIB, ChannelLimits, Limits

from ..conftest import RelayFactory
from ..support import (
    OPEN_SOCKETS,
    EventStream,
    H11Client,
    connect,
    publish,
    scrape,
    wait_until,
)


def _subscribe(port: int, channel: str = "news", query: str = "",
               headers: list[tuple[bytes, bytes]] | None = None) -> EventStream:
    path = f"/events/{channel}{query}".encode()
    return EventStream(port, path, headers)


def test_subscribe_then_publish(make_relay: RelayFactory) -> None:
    relay = make_relay()
    stream = _subscribe(relay.port)
    assert stream.status == 200 and b"content-type: text/event-stream" in stream.head
    reply = publish(relay.port, "news", {"headline": "hello"}, event="story")
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc["subscribers"] == 1
    stream.read(1)
    [event] = stream.events
    assert (event.event, event.id, event.data) == ("story", doc["id"], '{"headline":"hello"}')
    retry = stream.parser.retry
    assert retry is not None and 1500 <= retry <= 4500  # 3 s, jittered by +-50%


def test_replay_by_last_event_id_header_or_query_is_exact(make_relay: RelayFactory) -> None:
    relay = make_relay()
    ids = [json.loads(publish(relay.port, "news", f"e{i}").body)["id"] for i in range(6)]
    by_header = _subscribe(relay.port, headers=[(b"last-event-id", ids[2].encode())])
    by_query = _subscribe(relay.port, query=f"?last_event_id={ids[2]}")
    for stream in (by_header, by_query):
        stream.read(3)
        assert [e.data for e in stream.events] == ["e3", "e4", "e5"]
    publish(relay.port, "news", "e6")
    for stream in (by_header, by_query):
        stream.read(4)
        assert [e.data for e in stream.events][-1] == "e6"
    fresh = _subscribe(relay.port)  # no position: live events only
    publish(relay.port, "news", "e7")
    fresh.read(1)
    assert [e.data for e in fresh.events] == ["e7"]


def test_a_position_no_longer_held_gives_a_reset_first(make_relay: RelayFactory) -> None:
    relay = make_relay(channels=ChannelLimits(history=3))
    ids = [json.loads(publish(relay.port, "news", f"e{i}").body)["id"] for i in range(5)]
    stream = _subscribe(relay.port, headers=[(b"last-event-id", ids[0].encode())])
    stream.read(4)
    assert stream.events[0].event == "relay.reset"
    assert [e.data for e in stream.events[1:]] == ["e2", "e3", "e4"]
    assert scrape(relay.port)["relay_channel_resets_total"] == 1


def test_replay_while_publishing_loses_and_repeats_nothing(make_relay: RelayFactory) -> None:
    """A publisher keeps publishing while subscribers join at a position: each receives every
    event after its position exactly once, in order."""
    relay = make_relay()
    first = json.loads(publish(relay.port, "busy", 0).body)["id"]
    done = threading.Event()

    def publisher() -> None:
        for i in range(1, 200):
            publish(relay.port, "busy", i)
        done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    joiners = []
    for _ in range(5):
        joiners.append(_subscribe(relay.port, "busy", headers=[(b"last-event-id",
                                                                 first.encode())]))
    thread.join(60)
    for stream in joiners:
        stream.read(199)
        assert [int(e.data) for e in stream.events] == list(range(1, 200))


def test_an_event_published_while_the_replay_is_read_is_not_lost(
        make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriber is live before its replay is read: an event published in between (as
    while a Redis answer is on its way) comes after the replay, once. Made to happen every
    time, not left to a race."""
    usual = MemoryBroker.replay

    async def publish_during(self: MemoryBroker, channel: str, after: EventKey | None,
                             given: bool) -> Replay:
        replay = await usual(self, channel, after, given)  # what the store held
        self.publish_now(channel, "during", None)  # then, before the answer arrives
        return replay

    monkeypatch.setattr(MemoryBroker, "replay", publish_during)
    relay = make_relay()
    first = json.loads(publish(relay.port, "news", "before").body)["id"]
    stream = _subscribe(relay.port, headers=[(b"last-event-id", first.encode())])
    publish(relay.port, "news", "after")
    stream.read(2)
    assert [e.data for e in stream.events] == ["during", "after"]


def test_bad_names_bodies_and_methods(make_relay: RelayFactory) -> None:
    relay = make_relay()
    assert _subscribe(relay.port, "no/slashes%2F").status == 400
    assert _subscribe(relay.port, "x" * 129).status == 400
    client = H11Client(connect(relay.port))
    for body, status in ((b"not json", 400), (b"[1]", 400), (b'{"event": "x"}', 400),
                         (b'{"data": 1, "event": "a\\nb"}', 400), (b'{"data": "x"} x', 400),
                         (b'{"data": "\\ud800"}', 400), (b'{"data": 1, "event": "\\udfff"}', 400),
                         (b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
                         (json.dumps({"data": "x" * (65 * KIB)}).encode(), 413)):
        client.send(b"POST", b"/events/ok", body)
        reply = client.read_reply()
        assert reply.status == status, body[:40]
        assert json.loads(reply.body)["error"]["code"] == "invalid_event"
        client.next_cycle()
    client.send(b"DELETE", b"/events/ok")
    reply = client.read_reply()
    assert reply.status == 405 and reply.headers[b"allow"] == b"GET, POST, OPTIONS"


def test_tokens_for_publishing_and_subscribing(make_relay: RelayFactory) -> None:
    relay = make_relay(client_tokens=("tok-sub",), publish_tokens=("tok-pub",))
    assert _subscribe(relay.port).status == 401
    assert _subscribe(relay.port, query="?access_token=wrong").status == 401
    by_query = _subscribe(relay.port, query="?access_token=tok-sub")  # what EventSource can do
    by_header = _subscribe(relay.port, headers=[(b"authorization", b"Bearer tok-sub")])
    assert by_query.status == by_header.status == 200
    assert publish(relay.port, "news", "x").status == 401
    assert publish(relay.port, "news", "x", headers=[(b"authorization",
                                                       b"Bearer tok-sub")]).status == 401
    assert publish(relay.port, "news", "x", headers=[(b"authorization",
                                                       b"Bearer tok-pub")]).status == 200
    by_query.read(1)
    by_header.read(1)


@pytest.mark.parametrize("rounds", [1])
def test_a_subscriber_that_stops_reading_is_dropped_and_delays_no_one(
        rounds: int, make_relay: RelayFactory) -> None:
    """One subscriber stops reading (a tiny receive buffer, never read); events keep coming.
    Its buffer passes the bound: it is cut, while another subscriber gets every event."""
    # (--socket-buffer caps the kernel's share, so the relay's own buffer is what fills)
    relay = make_relay(channels=ChannelLimits(slow_buffer=64 * KIB),
                       limits=Limits(socket_buffer=16 * KIB))
    slow = socket.socket()
    OPEN_SOCKETS.append(slow)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KIB)
    slow.connect(("127.0.0.1", relay.port))
    slow.sendall(b"GET /events/flood HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    fast = _subscribe(relay.port, "flood")
    assert wait_until(lambda: relay.channels is not None
                      and relay.channels.broker.hub.count("flood") == 2)
    payload = "x" * 4000
    for sent in range(8, rounds * 400 + 1, 8):  # ~1.6 MB: far past 64 KiB plus the kernel's
        for _ in range(8):
            publish(relay.port, "flood", payload)
        # The fast one reads each 32 KB batch before the next: it is never behind by its
        # bound, however busy the machine (a reader thread racing the publishes was, at times).
        fast.read(sent)
    assert len(fast.events) == rounds * 400
    assert wait_until(lambda: scrape(relay.port)["relay_channel_slow_drops_total"] == 1)
    slow.settimeout(5)
    got = b""
    with contextlib.suppress(ConnectionError):
        while data := slow.recv(1 << 20):
            got += data
    assert got and not got.endswith(b"0\r\n\r\n")  # cut: never a clean end


def test_metrics_count_subscribers_publishes_and_deliveries(make_relay: RelayFactory) -> None:
    relay = make_relay()
    streams = [_subscribe(relay.port, "m") for _ in range(3)]
    for i in range(4):
        publish(relay.port, "m", i)
    for stream in streams:
        stream.read(4)
    late = _subscribe(relay.port, "m", query="?last_event_id=1-0")  # reset, 4 replayed
    late.read(5)
    m = scrape(relay.port)
    assert m["relay_channel_subscribers"] == 4
    assert m["relay_channel_publishes_total"] == 4
    assert m["relay_channel_deliveries_total"] == 12
    assert m["relay_channel_replayed_events_total"] == 4
    assert m['relay_requests_total{route="/events",status="200"}'] == 4  # the publishes


def _gets(log: Path, path: str) -> list[dict[str, Any]]:
    """The access-log lines of the GETs of ``path`` so far."""
    if not log.exists():
        return []
    return [d for d in map(json.loads, log.read_text().splitlines())
            if d["path"] == path and d["method"] == "GET"]


def test_the_access_log_counts_the_bytes_and_events_a_subscriber_was_sent(
        make_relay: RelayFactory, tmp_path: Path) -> None:
    """Live events (the hub's fast path), a heartbeat (bytes, not an event) and a replay (the
    exchange's writes): the line says what the client received, counted as it came."""
    log = tmp_path / "access.log"
    relay = make_relay(access_log=str(log), channels=ChannelLimits(heartbeat=0.05))
    live = _subscribe(relay.port, "counted")
    for i in range(7):
        publish(relay.port, "counted", {"n": i})
    live.read(7, until=lambda s: b": heartbeat" in s.payload)
    first = live.events[0].id
    live.sock.close()
    assert wait_until(lambda: len(_gets(log, "/events/counted")) == 1)  # (written per turn)
    [line] = _gets(log, "/events/counted")
    assert line["ended"] == "client_disconnect"
    assert line["events"] == 7 and line["bytes_out"] == live.received
    replayed = _subscribe(relay.port, "counted", query=f"?last_event_id={first}")
    replayed.read(6)
    replayed.sock.close()
    assert wait_until(lambda: len(_gets(log, "/events/counted")) == 2)
    second = _gets(log, "/events/counted")[1]
    assert second["events"] == 6 and second["bytes_out"] == replayed.received
    m = scrape(relay.port)
    assert m["relay_events_total"] == 13
    publishes = sum(d["bytes_out"] for d in map(json.loads, log.read_text().splitlines())
                    if d["method"] == "POST")
    assert m["relay_response_bytes_total"] == live.received + replayed.received + publishes


def test_last_event_id_0_0_gets_a_reset_only_when_events_were_lost(
        make_relay: RelayFactory) -> None:
    """``?last_event_id=0-0`` (or the header) on a channel that lost nothing: its events, no
    ``relay.reset``; on one whose history dropped some: the reset, then what is held."""
    relay = make_relay(channels=ChannelLimits(history=3))
    kept = [json.loads(publish(relay.port, "kept", f"k{i}").body)["id"] for i in range(3)]
    for how in ({"query": "?last_event_id=0-0"}, {"headers": [(b"last-event-id", b"0-0")]}):
        whole = _subscribe(relay.port, "kept", **how)  # type: ignore[arg-type]
        whole.read(3)
        assert [e.id for e in whole.events] == kept and whole.events[0].event != "relay.reset"
    lost = [json.loads(publish(relay.port, "lost", f"l{i}").body)["id"] for i in range(5)]
    partial = _subscribe(relay.port, "lost", query="?last_event_id=0-0")
    partial.read(4)
    assert partial.events[0].event == "relay.reset"
    assert [e.id for e in partial.events[1:]] == lost[2:]
    assert scrape(relay.port)["relay_channel_resets_total"] == 1
