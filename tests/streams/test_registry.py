"""The registry's timers on a fake clock (the orphan timer, the expiry), its memory bound, its
ids, and the drain: alone a reader stays to the end, with a shared store it is told to resume."""

from __future__ import annotations

import asyncio
import json

from relay.config import ResumeLimits
from relay.errors import RelayShutdown
from relay.streams.registry import MemoryStore, Streams
from relay.streams.stream import ResumableStream

from ..support import FakeLoop
from .test_stream import _payload, _reader

LIMITS = ResumeLimits(ttl=600, orphan_timeout=60, max_bytes=1000, memory=100)


def test_ids_are_long_random_and_url_safe(fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    ids = set()
    for _ in range(50):
        stream = streams.create(None)
        assert stream is not None
        ids.add(stream.id)
    assert len(ids) == 50
    assert all(len(i) >= 3 + 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


def test_the_orphan_timer_runs_only_while_nobody_reads(fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    stream = streams.create(None)
    assert stream is not None
    stopped: list[bool] = []
    stream.stop_upstream = lambda: stopped.append(True)
    _, _, ex = _reader(stream)
    fake_loop.advance(100)
    assert stream.live  # read: no timer
    ex.client_gone()
    fake_loop.advance(59.9)
    assert stream.live
    _again, _, again_ex = _reader(stream)  # came back in time: the timer is off
    fake_loop.advance(100)
    assert stream.live
    again_ex.client_gone()
    fake_loop.advance(60)
    assert stream.status == "orphaned" and stopped == [True]
    assert streams.stats.orphaned == 1
    assert json.loads(stream.events[-1].split(b"data: ")[1].split(b"\n")[0])["error"][
        "code"] == "orphaned"


def test_an_ended_stream_is_forgotten_after_the_ttl(fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    stream = streams.create(None)
    assert stream is not None
    stream.feed([b"data: a\n\n"])
    stream.complete()
    assert streams.held == len(stream.events[0])
    fake_loop.advance(599)
    assert asyncio.run(streams.find(stream.id)) is stream
    fake_loop.advance(1)
    assert asyncio.run(streams.find(stream.id)) is None
    assert streams.stats.expired == 1 and streams.held == 0 and len(streams) == 0


def test_memory_goes_to_live_streams_and_a_stream_outgrowing_it_is_stopped(
        fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    old = streams.create(None)
    assert old is not None
    old.feed([b"data: " + b"x" * 120 + b"\n\n"])  # over the memory
    old.complete()  # ended: may go first
    live = streams.create(None)
    assert live is not None and asyncio.run(streams.find(old.id)) is None
    stopped: list[bool] = []
    live.stop_upstream = lambda: stopped.append(True)
    live.feed([b"data: " + b"y" * 100 + b"\n\n"])  # it outgrows the memory: stopped
    fake_loop.run_soon()
    assert live.status == "too_large" and stopped == [True]
    assert streams.create(None) is not None  # (the ended one goes first)


def test_cancel_is_counted_once(fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    stream = streams.create(None)
    assert stream is not None
    asyncio.run(streams.cancel(stream))
    asyncio.run(streams.cancel(stream))
    assert stream.status == "cancelled" and streams.stats.cancelled == 1


def test_the_drain_waits_for_live_streams_then_stops_the_rest() -> None:
    async def run() -> None:
        streams = Streams(asyncio.get_running_loop(), LIMITS)
        done, stuck = streams.create(None), streams.create(None)
        assert done is not None and stuck is not None
        asyncio.get_running_loop().call_later(0.05, done.complete)
        assert not await streams.drain(0.3)
        assert done.status == "completed" and stuck.status == "relay_shutdown"
        assert await streams.drain(0.3)  # nothing left

    asyncio.run(run())


def test_draining_alone_keeps_the_reader_shared_tells_it_where_to_resume(
        fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    stream = streams.create(None)
    assert stream is not None
    stream.feed([b"data: a\n\n"])
    reader, transport, _ = _reader(stream)
    transport.take()
    reader.on_draining()
    assert stream.followers == [reader] and transport.out == b""
    streams.shared = True
    reader.on_draining()
    payload = _payload(transport)
    assert payload.startswith(b"event: relay.resume\ndata: ") and payload.endswith(b"<end>")
    doc = json.loads(payload.split(b"data: ")[1].split(b"\n")[0])
    assert doc == {"stream_id": stream.id, "last_event_id": "1",
                   "url": f"/v1/streams/{stream.id}"}
    assert stream.live and not stream.followers  # the generation goes on


def test_a_reader_behind_is_told_to_resume_from_what_it_was_sent(fake_loop: FakeLoop) -> None:
    streams = Streams(fake_loop, LIMITS)  # type: ignore[arg-type]
    streams.shared = True
    stream = streams.create(None)
    assert stream is not None
    reader, transport, _ = _reader(stream)
    stream.feed([b"data: a\n\n"])
    reader.on_client_paused()
    stream.feed([b"data: b\n\ndata: c\n\n"])  # not sent: the client is slow
    transport.take()
    reader.on_draining()
    doc = json.loads(_payload(transport).split(b"data: ")[1].split(b"\n")[0])
    assert doc["last_event_id"] == "1"


def test_a_shutdown_has_the_same_type_on_a_resumable_stream_as_on_a_plain_one() -> None:
    """OpenAI's ``server_error``, as a plain stream's :class:`RelayShutdown` (it said
    ``relay_error`` here)."""
    async def run() -> bytes:
        streams = Streams(asyncio.get_running_loop(), LIMITS)
        stuck = streams.create(None)
        assert stuck is not None
        assert not await streams.drain(0.05)
        return stuck.events[-1]

    last = asyncio.run(run())
    error = json.loads(last.partition(b"data: ")[2].partition(b"\n")[0])["error"]
    assert error["code"] == "relay_shutdown" and error["type"] == RelayShutdown.type
    assert RelayShutdown.type == "server_error"


class _RecordingStore(MemoryStore):
    """A store that says what the registry asked of it (and that one instance reads elsewhere)."""

    shared = True

    def __init__(self, streams: Streams) -> None:
        super().__init__(streams)
        self.calls: list[tuple[str, object]] = []
        self.elsewhere = True

    def write(self, stream: ResumableStream, start: int) -> None:
        self.calls.append(("write", start))

    def ended(self, stream: ResumableStream) -> None:
        self.calls.append(("ended", stream.status))

    def read_elsewhere(self, stream: ResumableStream) -> bool:
        return self.elsewhere

    async def find(self, stream_id: str) -> ResumableStream | None:
        self.calls.append(("find", stream_id))
        return None

    async def close(self) -> None:
        self.calls.append(("close", None))


def test_the_registry_tells_its_store_and_asks_it_what_it_cannot_know(
        fake_loop: FakeLoop) -> None:
    """The store is a part the registry calls (StreamStore), never a subclass: each new event
    is written, the end too; a stream read on another instance is no orphan; an id not held
    here is the store's to find."""
    streams = Streams(fake_loop, LIMITS, _RecordingStore)  # type: ignore[arg-type]
    store = streams.store
    assert isinstance(store, _RecordingStore) and streams.shared
    stream = streams.create(None)
    assert stream is not None
    stream.feed([b"data: a\n\n", b"data: b\n\n"])
    _, _, ex = _reader(stream)
    ex.client_gone()
    fake_loop.advance(100)
    assert stream.live  # read elsewhere: no orphan timer
    store.elsewhere = False
    streams.unfollowed(stream)  # (what the Redis store calls on the last "unfollow")
    fake_loop.advance(60)
    assert stream.status == "orphaned"
    assert asyncio.run(streams.find("rs_elsewhere")) is None
    asyncio.run(streams.close())
    assert store.calls == [("write", 0), ("write", 0), ("write", 2), ("ended", "orphaned"),
                           ("find", "rs_elsewhere"), ("close", None)]
