"""Locust streaming user: time to first token and tokens/s as locust metrics.

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8080 \\
        --headless -u 200 -r 50 -t 30s

Each task streams one chat completion and reports: ``TTFT`` (ms to the first content token),
``tokens/s`` (tokens per second of the stream, shown in the response-time columns), and
locust's own ``stream`` entry (ms to the response head).
"""

from __future__ import annotations

import json
import os
import time

from locust import HttpUser, between, task

TOKENS = int(os.environ.get("BENCH_TOKENS", "100"))
DELAY_MS = os.environ.get("BENCH_DELAY_MS", "20")


class StreamingUser(HttpUser):
    wait_time = between(0.0, 0.2)

    @task
    def stream_chat(self) -> None:
        body = {"model": "mock-gpt", "stream": True, "max_tokens": TOKENS,
                "messages": [{"role": "user", "content": "hi"}]}
        fire = self.environment.events.request.fire
        start = time.perf_counter()
        first = None
        tokens = nbytes = 0
        with self.client.post("/v1/chat/completions", json=body, stream=True,
                              headers={"x-mock-delay-ms": DELAY_MS}, catch_response=True,
                              name="stream") as resp:
            for line in resp.iter_lines():
                nbytes += len(line)
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("error"):
                    resp.failure(chunk["error"].get("message", "error event"))
                    return
                choices = chunk.get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    tokens += 1
                    if first is None:
                        first = time.perf_counter()
                        fire(request_type="SSE", name="TTFT", response_time=(first - start) * 1000,
                             response_length=0, exception=None, context={})
            resp.success()
        elapsed = time.perf_counter() - start
        if first is not None and elapsed > 0:
            fire(request_type="SSE", name="tokens/s", response_time=tokens / elapsed,
                 response_length=nbytes, exception=None, context={})
