"""Graceful drain on SIGTERM, with the relay and the mock as real processes."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from ..support import (
    EventStream,
    H11Client,
    chat_body,
    connect,
    read_until_close,
    sse_data,
    wait_until,
)
from ..support.processes import spawn
from ..support.redis_server import RedisServer

SLOW = [(b"x-mock-delay-ms", b"150")]  # 12 events 150 ms apart: ~1.8 s per stream


def _open_streams(port: int, n: int, tokens: int) -> tuple[list[H11Client], list[bytes]]:
    clients = []
    for _ in range(n):
        client = H11Client(connect(port, timeout=30))
        client.send(b"POST", b"/v1/chat/completions", chat_body(tokens), SLOW)
        clients.append(client)
    firsts = [c.sock.recv(65536) for c in clients]  # each stream has started
    return clients, firsts


def _read_all(clients: list[H11Client], firsts: list[bytes]) -> list[bytes]:
    bodies: list[bytes] = [b""] * len(clients)

    def read(i: int) -> None:
        bodies[i] = firsts[i] + read_until_close(clients[i].sock)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return bodies


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_five_slow_streams_then_exits_0() -> None:
    with spawn("mock", "--port", "0") as (_mock, mock_port, _), \
         spawn("serve", "--port", "0", "--upstream", f"http://127.0.0.1:{mock_port}",
               "--drain-timeout", "20") as (relay, port, _):
        idle = connect(port)  # a keep-alive connection with nothing in flight
        clients, firsts = _open_streams(port, 5, 10)
        signalled = time.monotonic()
        relay.send_signal(signal.SIGTERM)
        assert wait_until(lambda: _refused(port), 5)  # no new connections
        idle.settimeout(5)
        assert idle.recv(1) == b""  # the idle connection was closed at once
        bodies = _read_all(clients, firsts)  # Connection closes after each response
        assert relay.wait(20) == 0
        took = time.monotonic() - signalled
    for body in bodies:
        assert body.startswith(b"HTTP/1.1 200 ") and body.endswith(b"0\r\n\r\n")
        _head, _, chunked_body = body.partition(b"\r\n\r\n")
        events = sse_data(_unchunk(chunked_body))
        assert events[-1] == b"[DONE]" and len(events) == 13  # role, 10 tokens, finish, DONE
    assert took < 20


def test_drain_timeout_ends_open_streams_with_an_error_event() -> None:
    with spawn("mock", "--port", "0") as (_mock, mock_port, _), \
         spawn("serve", "--port", "0", "--upstream", f"http://127.0.0.1:{mock_port}",
               "--drain-timeout", "0.5") as (relay, port, _):
        clients, firsts = _open_streams(port, 2, 200)  # ~30 s streams
        relay.send_signal(signal.SIGTERM)
        bodies = _read_all(clients, firsts)
        assert relay.wait(10) == 0
    for body in bodies:
        events = sse_data(_unchunk(body.partition(b"\r\n\r\n")[2]))
        assert b"relay_shutdown" in events[-1] and b"[DONE]" not in events
        assert body.endswith(b"0\r\n\r\n")  # a clean end after the error event


def _unchunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol], 16)
        if size == 0:
            return out
        out += data[eol + 2: eol + 2 + size]
        pos = eol + 2 + size + 2


def _resumable(port: int, tokens: int) -> EventStream:
    return EventStream(port, b"/v1/chat/completions",
                       [(b"x-relay-resumable", b"1"), (b"x-mock-delay-ms", b"100")],
                       method=b"POST", body=chat_body(tokens), timeout=30)


def test_alone_a_resumable_stream_finishes_during_the_drain_for_its_client() -> None:
    with spawn("serve", "--port", "0", "--drain-timeout", "20") as (relay, port, lines):
        kept = _resumable(port, 10)
        kept.read(2)
        left = _resumable(port, 10)  # its client leaves: the generation goes on anyway
        left.read(1)
        left.sock.close()
        relay.send_signal(signal.SIGTERM)
        kept.read(until=lambda s: s.ended)
        assert kept.events[-1].data == "[DONE]" and len(kept.events) == 13
        assert relay.wait(20) == 0
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert {d["ended"] for d in logged if "stream_id" in d} == {"complete", "client_disconnect"}


def test_with_redis_a_drain_tells_readers_to_resume_and_another_instance_has_the_rest(
        redis_server: RedisServer) -> None:
    common = ("--redis", redis_server.url, "--access-log", "off")
    with spawn("serve", "--port", "0", "--drain-timeout", "20", *common) as (a, a_port, _), \
         spawn("serve", "--port", "0", *common) as (_b, b_port, _):
        first = _resumable(a_port, 15)
        first.read(3)
        a.send_signal(signal.SIGTERM)
        first.read(until=lambda s: s.ended)  # told to resume, then a clean end
        told = first.events[-1]
        assert told.event == "relay.resume"
        where = json.loads(told.data)
        sid = where["stream_id"]
        rest = EventStream(b_port, where["url"].encode(),
                           [(b"last-event-id", where["last_event_id"].encode())], timeout=30)
        rest.read(until=lambda s: s.ended)
        assert a.wait(20) == 0  # once the generation finished (into Redis)
    ids = [e.id for e in first.events[:-1]] + [e.id for e in rest.events]
    assert ids == [str(i) for i in range(1, 19)]  # role, 15 tokens, finish, [DONE]
    assert rest.events[-1].data == "[DONE]" and sid in first.head.decode()


@pytest.mark.parametrize(("first", "second"), [(signal.SIGTERM, signal.SIGINT),
                                               (signal.SIGINT, signal.SIGINT)])
def test_a_second_signal_during_the_drain_ends_the_process_at_once(
        first: signal.Signals, second: signal.Signals) -> None:
    """A second Ctrl-C during a 60 s drain was ignored (waited 18 s in the issue): now the
    process ends at once, says so in one line, and the open streams get relay_shutdown."""
    with spawn("serve", "--port", "0", "--drain-timeout", "60", "--access-log", "off",
               env={"RELAY_UPSTREAM": ""}) as (relay, port, lines):
        clients, firsts = _open_streams(port, 2, 200)  # ~30 s streams
        relay.send_signal(first)
        assert wait_until(lambda: any("draining" in line for line in lines), 5)
        assert wait_until(lambda: _refused(port), 5)
        assert relay.poll() is None  # draining, the streams still running
        sent = time.monotonic()
        relay.send_signal(second)
        bodies = _read_all(clients, firsts)
        assert relay.wait(5) == 0
        took = time.monotonic() - sent
    assert took < 5
    said = [line for line in lines if "second signal" in line]
    assert len(said) == 1 and "exiting now, 2 open connections cut" in said[0], lines
    assert not any("Traceback" in line for line in lines)
    for body in bodies:
        events = sse_data(_unchunk(body.partition(b"\r\n\r\n")[2]))
        assert b"relay_shutdown" in events[-1] and b"[DONE]" not in events
