"""Resumable chat completions through the relay, with the openai SDK (a recipe: copy it).

The relay numbers the events of a stream asked with ``X-Relay-Resumable: 1`` (ids 1, 2, ...)
and keeps them, so after a cut connection the SDK can read the rest from
``GET /v1/streams/{id}`` with ``Last-Event-ID``: the number of chunks it already had, as every
numbered event is one chunk. The SDK parses the resumed stream like the first one.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")
    for chunk in resumable_chat(client, model="mock-gpt",
                                messages=[{"role": "user", "content": "hi"}]):
        print(chunk.choices[0].delta.content or "", end="", flush=True)

A cut shows as an ``httpx`` transport error (or ``openai.APIConnectionError``) while
iterating; a relay that drains for a deploy sends an event naming the stream (``relay.resume``)
and ends cleanly: both are resumed, up to ``attempts`` times. A cancelled or failed stream
raises ``openai.APIError`` as a plain one would. Stop a generation with
``client.post(f"/streams/{stream_id}/cancel", cast_to=object)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionChunk


def resumable_chat(client: openai.OpenAI, attempts: int = 5,
                   **create: Any) -> Iterator[ChatCompletionChunk]:
    """The chunks of one streamed chat completion, across as many cuts as ``attempts``."""
    raw = client.chat.completions.with_raw_response.create(
        stream=True, extra_headers={"X-Relay-Resumable": "1"}, **create)
    stream_id = raw.headers["x-relay-stream-id"]
    stream: openai.Stream[ChatCompletionChunk] = raw.parse()
    seen = 0  # chunks received: the id of the last numbered event
    for _ in range(attempts + 1):
        try:
            for chunk in stream:
                if getattr(chunk, "stream_id", None):  # relay.resume: the relay drains
                    break
                seen += 1
                yield chunk
            else:
                return  # data: [DONE] (or a stream already read to its end: 204)
        except (httpx.TransportError, openai.APIConnectionError):
            pass  # the connection was cut: resume below
        stream = client.get(f"/streams/{stream_id}", cast_to=ChatCompletionChunk, stream=True,
                            stream_cls=openai.Stream[ChatCompletionChunk],
                            options={"headers": {"Last-Event-ID": str(seen)}})
    where = httpx.Request("GET", f"/streams/{stream_id}")
    raise openai.APIConnectionError(message=f"stream {stream_id}: gave up after {attempts} "
                                    "resumes", request=where)
