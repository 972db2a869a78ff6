"""An OpenAI-compatible mock upstream: the default upstream of ``make run``, and the load source
of tests and benchmarks, so it is built to be cheap per event.

``POST /v1/chat/completions`` answers a ``chat.completion`` JSON, or with ``"stream": true`` a
stream of ``chat.completion.chunk`` events: a role chunk, ``max_tokens`` content chunks, a
finish chunk, a usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``.
``GET /v1/models`` lists one model. Request headers steer it:

==================== =========================================================================
``x-mock-delay-ms``  pause between two events
``x-mock-ttft-ms``   pause before the first event (after the response head)
``x-mock-fail-after`` drop the connection after N chunk events (no terminating chunk)
``x-mock-status``    answer that status with an OpenAI-style error body
``x-mock-timestamps`` ``1``: every chunk carries ``"mock_sent_at": <unix time>`` taken as it is
                     written, so a client can measure per-event latency
``x-mock-created``   the ``created`` value (fixes the output for byte comparisons)
==================== =========================================================================
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from .server import Exchange

WORDS = (
    "Hello", " there", "!", " This", " is", " the", " relay", " mock", " streaming", " tokens",
    " one", " at", " a", " time", ",", " just", " like", " a", " real", " model", ".",
)
DONE = b"data: [DONE]\n\n"
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_BATCH = 32  # back-to-back streams write this many events per write, then let others run


def completion_text(max_tokens: int) -> str:
    """The text the mock generates for ``max_tokens`` tokens (tests compare against it)."""
    return "".join(WORDS[i % len(WORDS)] for i in range(max_tokens))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class MockUpstream:
    """The mock as a server handler (see the module docstring); counts what it served."""

    def __init__(self) -> None:
        self.requests = 0
        self.streams_completed = 0

    async def __call__(self, ex: Exchange) -> None:
        self.requests += 1
        req = ex.request
        if req.path == b"/v1/chat/completions" and req.method == b"POST":
            await self._chat(ex)
        elif req.path == b"/v1/models" and req.method == b"GET":
            model = {"id": "mock-gpt", "object": "model", "created": 0, "owned_by": "relay"}
            ex.respond(200, _dumps({"object": "list", "data": [model]}))
        else:
            ex.respond_error(404, f"no mock route for {req.path.decode(errors='replace')}",
                             "invalid_request_error", "unknown_url")

    async def _chat(self, ex: Exchange) -> None:
        hdr = dict(ex.request.headers)
        status = hdr.get(b"x-mock-status")
        if status is not None:
            code = int(status)
            type_, err_code = _ERROR_TYPES.get(code, ("server_error", None))
            headers = [(b"content-type", b"application/json")]
            if code == 429:
                headers.append((b"retry-after", b"1"))
            body = _dumps({"error": {"message": f"mock error {code}", "type": type_,
                                     "param": None, "code": err_code}})
            ex.start(code, headers, length=len(body))
            ex.write(body)
            ex.end()
            return
        try:
            body = json.loads(ex.request.body or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            ex.respond_error(400, "request body is not a JSON object", "invalid_request_error",
                             None)
            return
        n = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        created = int(hdr.get(b"x-mock-created") or time.time())
        model = str(body.get("model") or "mock-gpt")
        cid = "chatcmpl-" + hashlib.sha1(ex.request.body + b"%d" % created).hexdigest()[:24]
        if body.get("stream") is True:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._stream(ex, hdr, _events(cid, created, model, n, usage))
        else:
            ex.respond(200, _completion(cid, created, model, n))

    async def _stream(self, ex: Exchange, hdr: dict[bytes, bytes], events: list[bytes]) -> None:
        delay = int(hdr.get(b"x-mock-delay-ms", 0)) / 1000
        ttft = int(hdr.get(b"x-mock-ttft-ms", 0)) / 1000
        fail_after = int(hdr[b"x-mock-fail-after"]) if b"x-mock-fail-after" in hdr else -1
        stamp = hdr.get(b"x-mock-timestamps") == b"1"
        ex.start(200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")])
        if ttft:
            await asyncio.sleep(ttft)
        if 0 <= fail_after < len(events):
            events = events[:fail_after]
        else:
            fail_after = -1
            events = [*events, DONE]
        if delay:
            await _Pacer(ex, events, delay, stamp).run()
        else:
            await _back_to_back(ex, events, stamp)
        if fail_after >= 0:
            ex.abort()  # mid-body close: the reader sees a truncated chunked body
            return
        ex.end()
        self.streams_completed += 1


def _stamped(event: bytes) -> bytes:
    """The event with the time it is written, for latency measurements (``[DONE]`` unchanged)."""
    if not event.endswith(b"}\n\n"):
        return event
    return event[:-3] + b',"mock_sent_at":%.6f}\n\n' % time.time()


async def _back_to_back(ex: Exchange, events: list[bytes], stamp: bool) -> None:
    """Write events as fast as the reader takes them: a batch per write, each event its own
    chunk, yielding to other connections between batches and waiting when the reader is slow."""
    for start in range(0, len(events), _BATCH):
        batch = events[start : start + _BATCH]
        ex.write_pieces([_stamped(e) for e in batch] if stamp else batch)
        if ex.flow.paused:
            await ex.drain()
        else:
            await asyncio.sleep(0)


class _Pacer:
    """Writes one event every ``delay`` seconds from a timer callback (no task wake-up per
    event): cheap enough for tens of thousands of paced events per second. Deadlines advance
    by ``delay`` from the first event, so the pace does not drift; a paused reader skips ticks."""

    def __init__(self, ex: Exchange, events: list[bytes], delay: float, stamp: bool) -> None:
        self._ex, self._events, self._delay, self._stamp = ex, events, delay, stamp
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._next = 0
        self._at = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        self._tick()
        try:
            await self._done
        finally:
            if self._handle is not None:
                self._handle.cancel()

    def _tick(self) -> None:
        ex = self._ex
        if ex.gone:
            self._done.set_result(None)
            return
        if not ex.flow.paused:
            event = self._events[self._next]
            ex.write(_stamped(event) if self._stamp else event)
            self._next += 1
            if self._next == len(self._events):
                self._handle = None
                self._done.set_result(None)
                return
        self._at += self._delay
        self._handle = self._loop.call_at(self._at, self._tick)


def _events(cid: str, created: int, model: str, n: int, usage: bool) -> list[bytes]:
    """All chunk events of one stream, pre-encoded (each ends in ``}\\n\\n``)."""
    head = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
        cid.encode(), created, _dumps(model))
    cache: dict[str, bytes] = {}

    def chunk(delta: bytes, finish: bytes = b"null") -> bytes:
        tail = b'"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}\n\n'
        return head + tail % (delta, finish)

    out = [chunk(b'{"role":"assistant","content":""}')]
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        if word not in cache:
            cache[word] = chunk(b'{"content":%s}' % _dumps(word))
        out.append(cache[word])
    out.append(chunk(b"{}", b'"stop"'))
    if usage:
        out.append(head + b'"choices":[],"usage":%s}\n\n' % _dumps(_usage(n)))
    return out


def _usage(n: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}


def _completion(cid: str, created: int, model: str, n: int) -> bytes:
    message = {"role": "assistant", "content": completion_text(n)}
    return _dumps({
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(n),
    })
