"""Channels the way Python users build them: FastAPI + sse-starlette + a Redis broadcast.

    python -m bench.peers.starlette_channels --port P --redis redis://127.0.0.1:R/0

Same API as the relay's channels: ``GET /events/{channel}`` is an event stream (a ``retry:``
line, then ``id:``/``data:`` events), ``POST /events/{channel}`` with ``{"data": "..."}``
publishes and answers ``{"id": ..., "subscribers": N}`` (N: this process's subscribers of the
channel). Publishing is a Redis PUBLISH; one redis.asyncio pub/sub connection per process reads
every message and puts it on each local subscriber's asyncio.Queue, which is what the
``broadcaster`` library does (SUBSCRIBE on a channel's first local subscriber, UNSUBSCRIBE
after its last). Served by uvicorn on uvloop + httptools, one process.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse

RETRY_MS = 3000


class Broadcast:
    """One pub/sub connection fanning out to per-subscriber queues (broadcaster's design)."""

    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(url)  # commands (PUBLISH): the client's pool
        self.pubsub = self.redis.pubsub()
        self.queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-"
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A placeholder subscription: redis-py's listen() returns at once with none.
        await self.pubsub.subscribe("_bench_keepalive")
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.redis.aclose()

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            event = json.loads(message["data"])  # decoded once, shared by every queue
            for queue in self.queues.get(message["channel"].decode(), ()):
                queue.put_nowait(event)

    async def publish(self, channel: str, data: str) -> dict[str, Any]:
        event_id = f"{self._prefix}{next(self._ids)}"
        await self.redis.publish(channel, json.dumps({"id": event_id, "data": data}))
        return {"id": event_id, "subscribers": len(self.queues.get(channel, ()))}

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        subscribers = self.queues.setdefault(channel, set())
        first = not subscribers
        subscribers.add(queue)  # before the await: a second subscriber sends no second SUBSCRIBE
        if first:
            await self.pubsub.subscribe(channel)
        try:
            yield queue
        finally:
            subscribers.discard(queue)
            if not subscribers:
                del self.queues[channel]
                await self.pubsub.unsubscribe(channel)


def make_app(redis_url: str) -> FastAPI:
    broadcast = Broadcast(redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broadcast.start()
        yield
        await broadcast.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/events/{channel}")
    async def subscribe(channel: str) -> EventSourceResponse:
        async def events() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(retry=RETRY_MS)
            async with broadcast.subscribe(channel) as queue:
                while True:
                    event = await queue.get()
                    yield ServerSentEvent(data=event["data"], id=event["id"])

        # sse-starlette's own keep-alive comment, as the relay's heartbeat.
        return EventSourceResponse(events(), ping=15)

    @app.post("/events/{channel}")
    async def publish(channel: str, request: Request) -> dict[str, Any]:
        body = await request.json()
        return await broadcast.publish(channel, str(body["data"]))

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--redis", required=True, help="redis://127.0.0.1:PORT/0")
    args = ap.parse_args()
    print(f"starlette channels listening on http://127.0.0.1:{args.port}", flush=True)
    uvicorn.run(make_app(args.redis), host="127.0.0.1", port=args.port, log_level="warning",
                loop="uvloop", http="httptools", backlog=4096, access_log=False)


if __name__ == "__main__":
    main()
