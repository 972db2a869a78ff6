"""An OpenAI-compatible mock upstream: the default upstream of ``make run``, and the load source
of tests and benchmarks, so it is built to be cheap per event.

``POST /v1/chat/completions`` answers a ``chat.completion`` JSON, or with ``"stream": true`` a
stream of ``chat.completion.chunk`` events: a role chunk, ``max_tokens`` content chunks, a
finish chunk, a usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``.
``POST /v1/completions`` (legacy) and ``POST /v1/responses`` (the Responses API, typed events)
answer the same text in their own shapes (:mod:`relay.mock.generate`). ``GET /v1/models``
lists one model. Request headers steer it:

==================== =========================================================================
``x-mock-delay-ms``  pause between two events (default: the mock's own, 0 for ``relay mock``,
                     30 ms for the mock ``relay serve`` starts, so ``make run`` streams)
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

from ..net.exchange import Exchange
from .events import serve_back_to_back, serve_paced, start_stream
from .generate import (
    DEFAULT_TOKENS,
    DONE,
    chat_completion,
    chat_events,
    dumps,
    response_document,
    response_events,
    text_completion,
    text_events,
)

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class MockUpstream:
    """The mock as a server handler (see the module docstring); counts what it served.
    ``delay_ms``: the pause between events when a request does not ask for one."""

    def __init__(self, delay_ms: int = 0) -> None:
        self.delay_ms = delay_ms
        self.requests = 0
        self.streams_completed = 0

    async def __call__(self, ex: Exchange) -> None:
        self.requests += 1
        req = ex.request
        route = (req.method, req.path)
        if route == (b"GET", b"/v1/models"):
            model = {"id": "mock-gpt", "object": "model", "created": 0, "owned_by": "relay"}
            ex.respond(200, dumps({"object": "list", "data": [model]}))
        elif req.method == b"POST" and req.path in _APIS:
            await self._generate(ex, _APIS[req.path])
        else:
            ex.respond_error(404, f"no mock route for {req.path.decode(errors='replace')}",
                             "invalid_request_error", "unknown_url")

    async def _generate(self, ex: Exchange, api: str) -> None:
        hdr = dict(ex.request.headers)
        if b"x-mock-status" in hdr:
            _respond_status(ex, int(hdr[b"x-mock-status"]))
            return
        try:
            body = json.loads(ex.request.body or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            ex.respond_error(400, "request body is not a JSON object", "invalid_request_error",
                             None)
            return
        n = int(body.get("max_completion_tokens") or body.get("max_tokens")
                or body.get("max_output_tokens") or DEFAULT_TOKENS)
        created = int(hdr.get(b"x-mock-created") or time.time())
        model = str(body.get("model") or "mock-gpt")
        digest = hashlib.sha1(ex.request.body + b"%d" % created).hexdigest()[:24]
        stream = body.get("stream") is True
        if api == "responses":
            rid = "resp_" + digest
            if stream:
                await self._stream(ex, hdr, response_events(rid, created, model, n), done=False)
            else:
                ex.respond(200, dumps(response_document(rid, created, model, n)))
        elif api == "completions":
            cid = "cmpl-" + digest
            if stream:
                await self._stream(ex, hdr, text_events(cid, created, model, n))
            else:
                ex.respond(200, text_completion(cid, created, model, n))
        else:
            await self._chat(ex, hdr, body, "chatcmpl-" + digest, created, model, n)

    async def _chat(self, ex: Exchange, hdr: dict[bytes, bytes], body: dict[str, Any], cid: str,
                    created: int, model: str, n: int) -> None:
        if body.get("stream") is True:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._stream(ex, hdr, chat_events(cid, created, model, n, usage))
        else:
            ex.respond(200, chat_completion(cid, created, model, n))

    async def _stream(self, ex: Exchange, hdr: dict[bytes, bytes], events: list[bytes],
                      done: bool = True) -> None:
        """``done``: end with ``data: [DONE]`` (the Responses API does not)."""
        delay = int(hdr.get(b"x-mock-delay-ms", self.delay_ms)) / 1000
        ttft = int(hdr.get(b"x-mock-ttft-ms", 0)) / 1000
        fail_after = int(hdr[b"x-mock-fail-after"]) if b"x-mock-fail-after" in hdr else -1
        stamp = hdr.get(b"x-mock-timestamps") == b"1"
        start_stream(ex)
        if ttft:
            await asyncio.sleep(ttft)
        if 0 <= fail_after < len(events):
            events = events[:fail_after]
        else:
            fail_after = -1
            events = [*events, DONE] if done else events
        if delay:
            await serve_paced(ex, events, delay, stamp)
        else:
            await serve_back_to_back(ex, events, stamp)
        if fail_after >= 0:
            ex.abort()  # mid-body close: the reader sees a truncated chunked body
            return
        ex.end()
        self.streams_completed += 1


_APIS = {b"/v1/chat/completions": "chat", b"/v1/completions": "completions",
         b"/v1/responses": "responses"}


def _respond_status(ex: Exchange, code: int) -> None:
    """``x-mock-status``: that status, with the error body OpenAI sends for it."""
    type_, err_code = _ERROR_TYPES.get(code, ("server_error", None))
    headers = [(b"content-type", b"application/json")]
    if code == 429:
        headers.append((b"retry-after", b"1"))
    body = dumps({"error": {"message": f"mock error {code}", "type": type_, "param": None,
                            "code": err_code}})
    ex.start(code, headers, length=len(body))
    ex.write(body)
    ex.end()
