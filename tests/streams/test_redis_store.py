"""Resumable streams shared through a real redis-server by real relay processes: start on A,
resume on B with nothing lost or repeated; cancel from B stops A's upstream; a reader on B keeps
A's stream from being orphaned; a draining A hands its reader to B; finished and unknown streams
on B; readers joining on B while events flow; one mirror and two connections per instance;
Redis going away under the store; and a mirror that subscribes before it reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from relay.config import ResumeLimits
from relay.errors import StreamStoreUnavailable
from relay.redis_link import CLOSE_WAIT
from relay.streams.redis_store import RedisStore

from ..conftest import ScriptedFactory
from ..support import (
    EventStream,
    LoopThread,
    chat_body,
    wait_until,
)
from ..support.processes import spawn
from ..support.redis_server import CLOSE_BOUND, RedisServer
from .test_endpoints import _paced, cancel, resume, stream_id

_ID_LINE = re.compile(rb"id: \d+\n")
# The mock's output is fixed by its request body and ``created``: two runs are byte-identical.
_FIXED = [(b"x-relay-resumable", b"1"), (b"x-mock-created", b"1700000000")]


@contextmanager
def _relays(redis: RedisServer, *extra: tuple[str, ...]) -> Iterator[list[int]]:
    """One relay process per ``extra`` (its own flags), all on ``redis``."""
    with ExitStack() as stack:
        ports = []
        for flags in extra:
            _proc, port, _ = stack.enter_context(spawn(
                "serve", "--port", "0", "--redis", redis.url, "--access-log", "off", *flags))
            ports.append(port)
        yield ports


def _start(port: int, delay_ms: int = 50, max_tokens: int = 12,
           headers: list[tuple[bytes, bytes]] | None = None) -> EventStream:
    return EventStream(port, b"/v1/chat/completions",
                       [*_FIXED, (b"x-mock-delay-ms", b"%d" % delay_ms), *(headers or [])],
                       method=b"POST", body=chat_body(max_tokens))


_sid, _resume, _cancel = stream_id, resume, cancel  # (tests/streams/test_endpoints.py's)


def _ids(es: EventStream) -> list[int]:
    return [int(e.id) for e in es.events if e.id]


def _code(es: EventStream) -> str | None:
    data = es.events[-1].data
    return json.loads(data).get("error", {}).get("code") if data.startswith("{") else None


def _ended(es: EventStream) -> bool:
    return es.ended


def _stored(redis: RedisServer, sid: bytes) -> bool:
    """Whether the owner wrote the stream to Redis yet: a resume elsewhere finds it from then
    on (its first write follows its first event to its own client by a round trip)."""
    return wait_until(lambda: redis.client().exists(b"relay:rs:" + sid + b":meta") == 1)


def test_start_on_a_leave_resume_on_b_nothing_lost_or_repeated(
        redis_server: RedisServer) -> None:
    with _relays(redis_server, (), ()) as (a, b):
        whole = _start(a, max_tokens=30)  # the same request, uninterrupted
        first = _start(a, max_tokens=30)
        first.read(5)
        first.sock.close()  # A's client leaves; the generation goes on on A, into Redis
        rest = _resume(b, _sid(first), last=5)
        rest.read(1)
        assert not rest.ended and rest.events[0].id == "6"  # live on B, not a replay of it all
        rest.read(until=_ended)
        whole.read(until=_ended)
        n = len(whole.events)
        assert _ids(rest) == list(range(6, n + 1)) and rest.events[-1].data == "[DONE]"
        joined = first.payload[:first.payload.index(b"id: 5\n\n") + 7] + rest.payload
        assert _ID_LINE.sub(b"", joined) == _ID_LINE.sub(b"", whole.payload)


_endless = _paced(0, delay=0.05, endless=True)  # events until the relay closes it


def test_cancel_from_b_stops_the_upstream_on_a(
        redis_server: RedisServer, scripted: ScriptedFactory) -> None:
    up = scripted(_endless)
    with _relays(redis_server, ("--upstream", up.url), ()) as (a, b):
        first = _start(a)
        first.read(2)
        sid = _sid(first)
        assert _stored(redis_server, sid)
        on_b = _resume(b, sid)
        on_b.read(3)
        conn = up.connections[-1]
        assert not conn.closed.is_set()
        t0 = time.monotonic()
        status, answer = _cancel(b, sid)
        assert wait_until(conn.closed.is_set, 1.0)  # A closed its upstream at once
        assert status == 200 and answer["status"] == "cancelled" and answer["id"] == sid.decode()
        assert time.monotonic() - t0 < 1.5
        for reader in (first, on_b):  # the owner's client and a reader on B
            reader.read(until=_ended)
            assert _code(reader) == "cancelled"
            assert _ids(reader)[-1] == answer["events"] + 1  # the cancelled event is numbered
        assert _ids(on_b) == list(range(1, len(on_b.events) + 1))
        assert _cancel(a, sid) == (200, answer)  # idempotent, on either instance
        assert _cancel(b, sid) == (200, answer)


def test_a_reader_on_b_keeps_the_stream_on_a_from_being_orphaned(
        redis_server: RedisServer) -> None:
    with _relays(redis_server, ("--resume-orphan-timeout", "1"), ()) as (a, b):
        first = _start(a, delay_ms=100, max_tokens=60)  # about 6 s of events
        first.read(2)
        first.sock.close()
        sid = _sid(first)
        assert _stored(redis_server, sid)
        on_b = _resume(b, sid, last=2)
        t0 = time.monotonic()
        on_b.read(until=lambda s: time.monotonic() - t0 > 1.8)
        assert not on_b.ended and _code(on_b) is None  # no orphaned event: still generating
        assert _ids(on_b) == list(range(3, 3 + len(on_b.events)))
        last = _ids(on_b)[-1]
        on_b.sock.close()  # nobody reads anywhere now: A's orphan timer runs
        meta = b"relay:rs:" + sid + b":meta"
        assert wait_until(lambda: redis_server.client().hget(meta, "status") == b"orphaned", 3)
        assert time.monotonic() - t0 < 4.5  # (orphaned, well before its natural end)
        late = _resume(b, sid, last=last)
        late.read(until=_ended)
        assert _code(late) == "orphaned"


def test_a_draining_owner_tells_its_reader_to_resume_elsewhere_and_nothing_is_lost(
        redis_server: RedisServer) -> None:
    """A rolling deploy: A is stopped (SIGTERM) mid-stream; its reader gets where to resume at
    once, resumes on B, and gets the rest while A finishes the generation into Redis."""
    with _relays(redis_server, ()) as (b,), spawn(
            "serve", "--port", "0", "--redis", redis_server.url, "--access-log", "off",
            "--drain-timeout", "10") as (proc, a, _):
        first = _start(a, max_tokens=30)
        first.read(3)
        proc.send_signal(signal.SIGTERM)
        first.read(until=_ended)
        *events, resume = first.events
        told = json.loads(resume.data)
        assert resume.event == "relay.resume" and told["stream_id"] == _sid(first).decode()
        last = int(told["last_event_id"])
        assert [int(e.id) for e in events] == list(range(1, last + 1))
        rest = _resume(b, _sid(first), last=last)
        rest.read(until=_ended)
        assert _ids(rest) == list(range(last + 1, last + 1 + len(rest.events)))
        assert rest.events[-1].data == "[DONE]" and proc.wait(15) == 0


def test_a_finished_stream_on_b_replays_and_ends_then_204_and_unknown_ids_404(
        redis_server: RedisServer) -> None:
    with _relays(redis_server, (), ()) as (a, b):
        first = _start(a, delay_ms=0, max_tokens=6)
        first.read(until=_ended)
        sid, n = _sid(first), len(first.events)
        assert _stored(redis_server, sid)
        again = _resume(b, sid)
        again.read(until=_ended)
        assert again.status == 200 and again.payload == first.payload
        after = _resume(b, sid, last=3)
        after.read(until=_ended)
        assert _ids(after) == list(range(4, n + 1))
        assert _resume(b, sid, last=n).status == 204  # has it all: EventSource stops
        assert _resume(b, b"rs_unknown").status == 404
        assert _cancel(b, sid) == (200, {"id": sid.decode(), "status": "completed",
                                         "events": n})


def test_on_b_too_a_stream_is_only_for_the_token_that_started_it(
        redis_server: RedisServer) -> None:
    tokens = ("--client-token", "tok-a,tok-b")
    with _relays(redis_server, tokens, tokens) as (a, b):
        as_a, as_b = [(b"authorization", b"Bearer tok-a")], [(b"authorization", b"Bearer tok-b")]
        first = _start(a, delay_ms=0, max_tokens=3, headers=as_a)
        first.read(until=_ended)
        assert _stored(redis_server, _sid(first))
        assert _resume(b, _sid(first), headers=as_b).status == 404  # never says it exists
        again = _resume(b, _sid(first), last=2, headers=as_a)
        again.read(until=_ended)
        assert _ids(again) == list(range(3, len(first.events) + 1))


def test_readers_joining_on_b_while_events_flow_lose_and_repeat_nothing(
        redis_server: RedisServer) -> None:
    """Readers join on B at every position while A streams fast: each gets every event after
    its position once, in order, and the end (subscribed before reading Redis)."""
    with _relays(redis_server, (), ()) as (a, b):
        first = _start(a, delay_ms=2, max_tokens=300)
        first.read(3)
        sid = _sid(first)
        assert _stored(redis_server, sid)
        joiners: list[tuple[int, EventStream]] = []

        def join() -> None:
            while not first.ended:
                last = _ids(first)[-1]
                joiners.append((last, _resume(b, sid, last=last)))
                first.read(len(first.events) + 7)

        thread = threading.Thread(target=join)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
        n = len(first.events)
        assert len(joiners) > 10
        for last, joiner in joiners:
            if joiner.status == 204:
                assert last == n
                continue
            joiner.read(until=_ended)
            assert _ids(joiner) == list(range(last + 1, n + 1))
        mirrors = redis_server.client().pubsub_channels("relay:rs:*")
        assert wait_until(lambda: not redis_server.client().pubsub_channels("relay:rs:*")), \
            mirrors  # every mirror went with its readers


def test_readers_of_one_stream_on_one_instance_share_a_mirror_and_the_two_connections(
        redis_server: RedisServer) -> None:
    with _relays(redis_server, (), ()) as (a, b):
        first = _start(a, delay_ms=20, max_tokens=40)
        first.read(1)
        assert _stored(redis_server, _sid(first))
        readers = [_resume(b, _sid(first)) for _ in range(20)]
        for reader in readers:
            assert reader.status == 200
            reader.read(2)
        client = redis_server.client()
        assert client.pubsub_numsub(b"relay:rs:" + _sid(first)) == [
            (b"relay:rs:" + _sid(first), 1)]
        # Two per instance, whatever the readers, shared with channels (relay/redis_link.py).
        assert sorted(redis_server.relay_connections().values()) == [2, 2]
        for reader in readers:
            reader.read(until=_ended)
            assert _ids(reader) == list(range(1, len(reader.events) + 1))


def test_redis_away_find_elsewhere_is_unavailable_and_the_owner_goes_on(
        redis_server: RedisServer, lt: LoopThread) -> None:
    limits = ResumeLimits(ttl=60, orphan_timeout=60)

    async def scenario() -> tuple[list[bytes], int]:
        store = await RedisStore.connect(redis_server.url, asyncio.get_running_loop(), limits)
        try:
            stream = store.create(None)
            assert stream is not None
            stream.feed([b"data: 1\n\n"])
            await _until(lambda: redis_server.client().exists(b"relay:rs:" + stream.id.encode()))
            redis_server.stop()
            stream.feed([b"data: 2\n\n"])  # goes on in memory
            with pytest.raises(StreamStoreUnavailable) as caught:
                await store.find("rs_held_elsewhere")
            assert await store.find(stream.id) is stream  # ours: no Redis needed
            redis_server.start()  # empty: the writer rewrites what it holds
            stream.feed([b"data: 3\n\n"])
            key = b"relay:rs:" + stream.id.encode()
            await _until(lambda: redis_server.client().xlen(key) == 3, 10)
            entries = redis_server.client().xrange(key)
            return [fields[b"e"] for _, fields in entries], caught.value.status
        finally:
            await asyncio.wait_for(store.close(), CLOSE_BOUND)

    events, status = lt.run(scenario(), timeout=30)
    assert events == [b"data: %d\nid: %d\n\n" % (i, i) for i in (1, 2, 3)] and status == 503


async def _until(predicate: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_a_mirror_subscribes_before_it_reads_so_an_end_right_after_the_read_arrives(
        redis_server: RedisServer, lt: LoopThread) -> None:
    """Two stores in one process: the owner's stream ends just after the other's first read of
    Redis. Subscribed before that read, the other hears of the end; subscribed after, it would
    wait for a notice that went out before it listened."""
    limits = ResumeLimits(ttl=60, orphan_timeout=60)
    meta = redis_server.client().hget

    async def scenario() -> tuple[str | None, list[bytes]]:
        loop = asyncio.get_running_loop()
        owner = await RedisStore.connect(redis_server.url, loop, limits)
        other = await RedisStore.connect(redis_server.url, loop, limits)
        try:
            stream = owner.create(None)
            assert stream is not None
            stream.feed([b"data: 1\n\n"])
            key = b"relay:rs:" + stream.id.encode() + b":meta"
            await _until(lambda: meta(key, "count") == b"1")
            first_read = other.store._sync

            async def read_then_end(mirror: Any) -> str | None:
                error = await first_read(mirror)
                if stream.live:  # the owner's stream ends now, right after this read
                    stream.feed([b"data: 2\n\n"])
                    stream.complete()
                    await _until(lambda: meta(key, "status") == b"completed")
                return error

            other.store._sync = read_then_end  # type: ignore[method-assign]
            mirror = await other.find(stream.id)
            assert mirror is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mirror.ended.wait(), 3)  # type: ignore[attr-defined]
            return mirror.status, mirror.events
        finally:
            await asyncio.wait_for(other.close(), CLOSE_BOUND)
            await asyncio.wait_for(owner.close(), CLOSE_BOUND)

    status, events = lt.run(scenario(), timeout=30)
    assert status == "completed" and events == [b"data: 1\nid: 1\n\n", b"data: 2\nid: 2\n\n"]


def test_close_ends_the_writer_even_when_a_cancel_is_absorbed(
        redis_server: RedisServer, lt: LoopThread) -> None:
    """The writer's flush absorbs the close's cancel (as Python 3.11's ``asyncio.wait_for``
    does inside redis-py when the call it wraps ends in the same step as the cancel): it used to
    wait for the next write for good, and close() with it."""
    async def scenario() -> tuple[float, list[str]]:
        store = await RedisStore.connect(redis_server.url, asyncio.get_running_loop(),
                                         ResumeLimits(ttl=60, orphan_timeout=60))
        entered = asyncio.Event()

        async def absorbing_flush() -> None:
            if entered.is_set():
                return  # (one cancel absorbed, as in the hang seen)
            entered.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

        store.store._writer._flush = absorbing_flush  # type: ignore[attr-defined]
        stream = store.create(None)
        assert stream is not None
        stream.feed([b"data: 1\n\n"])
        await asyncio.wait_for(entered.wait(), 10)
        started = time.monotonic()
        await asyncio.wait_for(store.close(), CLOSE_BOUND)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0)
        left = [repr(t.get_coro()) for t in asyncio.all_tasks() if "_write_forever" in
                repr(t.get_coro())]
        return elapsed, left

    elapsed, left = lt.run(scenario(), timeout=40)
    # CLOSE_WAIT for the writer to go quiet (it never does here), then it ends at once: a
    # writer that ended only by the bound's second cancel takes another CLOSE_WAIT.
    assert left == [] and elapsed < 1.75 * CLOSE_WAIT, (elapsed, left)
