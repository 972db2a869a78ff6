"""Channel limits measured on a spawned relay: the whole-event size (data, name and id), the
byte cap of one channel's history and of all channels', and names reserved for the relay."""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import AbstractContextManager

from relay.config import KIB, MIB

from ..support import EventStream, publish, scrape
from ..support.processes import rss_bytes, spawn

# Allocator slack, the interpreter's own growth and the bodies read: on top of each budget.
ALLOWANCE = 16 * MIB
DATA = 64 * KIB - 64  # data that, with a name and an id, still fits in 64 KiB


def _settled_rss(pid: int, timeout: float = 3.0) -> int:
    """The RSS once two samples 50 ms apart agree (or at the deadline)."""
    deadline = time.monotonic() + timeout
    previous = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = rss_bytes(pid)
        if current == previous:
            return current
        previous = current
    return previous


def _serve(*extra: str) -> AbstractContextManager[tuple[subprocess.Popen[str], int, list[str]]]:
    return spawn("serve", "--port", "0", "--access-log", "off", *extra)


def test_one_channel_holds_at_most_its_history_bytes() -> None:
    """1000 publishes of ~64 KiB to one channel (main held them all: +188 MiB) stay within the
    default --channel-history-bytes (4 MiB) plus the allowance; the gauge is what is held."""
    with _serve() as (proc, port, _):
        assert publish(port, "big", "warm").status == 200
        before = _settled_rss(proc.pid)
        for _ in range(1000):
            assert publish(port, "big", "x" * DATA, event="e").status == 200
        grown = _settled_rss(proc.pid) - before
        assert grown <= 4 * MIB + ALLOWANCE, grown
        held = scrape(port)["relay_channel_history_bytes"]
        assert 3 * MIB < held <= 4 * MIB


def test_all_channels_hold_at_most_channels_memory() -> None:
    """40 channels x 16 events of ~64 KiB (40 MiB) with --channels-memory 8 MiB."""
    with _serve("--channels-memory", str(8 * MIB)) as (proc, port, _):
        assert publish(port, "c0", "warm").status == 200
        before = _settled_rss(proc.pid)
        for i in range(40 * 16):
            assert publish(port, f"c{i % 40}", "x" * DATA).status == 200
        grown = _settled_rss(proc.pid) - before
        assert grown <= 8 * MIB + ALLOWANCE, grown
        assert 7 * MIB < scrape(port)["relay_channel_history_bytes"] <= 8 * MIB


def test_an_event_name_counts_in_the_whole_event_size() -> None:
    """8 publishes with a 4 MiB event name were 200s, each kept in the history (+111 MiB):
    now each is a 413, and nothing is kept."""
    with _serve() as (proc, port, _):
        assert publish(port, "x", "warm").status == 200
        before = _settled_rss(proc.pid)
        for _ in range(8):
            reply = publish(port, "x", "x", event="E" * (4 * MIB))
            assert reply.status == 413
            error = json.loads(reply.body)["error"]
            assert error["code"] == "invalid_event" and "name and id" in error["message"]
        assert _settled_rss(proc.pid) - before <= ALLOWANCE
        # The edge: data and name of 64 KiB less the longest id fit; one byte more does not.
        assert publish(port, "x", "x" * (64 * KIB - 25 - 3), event="abc").status == 200
        assert publish(port, "x", "x" * (64 * KIB - 25 - 2), event="abc").status == 413


def test_relay_event_names_are_refused_to_publishers() -> None:
    """A publisher could send ``relay.reset``, the relay's own signal: a 400 now."""
    with _serve() as (_proc, port, _):
        stream = EventStream(port, b"/events/n")
        for name in ("relay.reset", "relay.anything"):
            reply = publish(port, "n", "fake", event=name)
            assert reply.status == 400
            error = json.loads(reply.body)["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == "invalid_event" and "relay." in error["message"]
        assert publish(port, "n", "real", event="relayed").status == 200  # only the prefix
        stream.read(1)
        assert [(e.event, e.data) for e in stream.events] == [("relayed", "real")]
