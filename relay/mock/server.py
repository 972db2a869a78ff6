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

from ..net.exchange import Exchange
from .chat import DONE, chat_completion, chat_events, dumps
from .events import serve_back_to_back, serve_paced, start_stream

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


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
            ex.respond(200, dumps({"object": "list", "data": [model]}))
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
            body = dumps({"error": {"message": f"mock error {code}", "type": type_,
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
            await self._stream(ex, hdr, chat_events(cid, created, model, n, usage))
        else:
            ex.respond(200, chat_completion(cid, created, model, n))

    async def _stream(self, ex: Exchange, hdr: dict[bytes, bytes], events: list[bytes]) -> None:
        delay = int(hdr.get(b"x-mock-delay-ms", 0)) / 1000
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
            events = [*events, DONE]
        if delay:
            await serve_paced(ex, events, delay, stamp)
        else:
            await serve_back_to_back(ex, events, stamp)
        if fail_after >= 0:
            ex.abort()  # mid-body close: the reader sees a truncated chunked body
            return
        ex.end()
        self.streams_completed += 1
