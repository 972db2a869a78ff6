"""What the mock generates: OpenAI-style chat completions, streamed or whole.

Events are pre-encoded bytes, built once per stream (repeated words are cached), because the
mock is the benchmarks' load source and must cost little per event.
"""

from __future__ import annotations

import json
from typing import Any

WORDS = (
    "Hello", " there", "!", " This", " is", " the", " relay", " mock", " streaming", " tokens",
    " one", " at", " a", " time", ",", " just", " like", " a", " real", " model", ".",
)
DONE = b"data: [DONE]\n\n"

def completion_text(max_tokens: int) -> str:
    """The text the mock generates for ``max_tokens`` tokens (tests compare against it)."""
    return "".join(WORDS[i % len(WORDS)] for i in range(max_tokens))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def chat_events(cid: str, created: int, model: str, n: int, usage: bool) -> list[bytes]:
    """All chunk events of one stream, pre-encoded (each ends in ``}\\n\\n``)."""
    head = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
        cid.encode(), created, dumps(model))
    cache: dict[str, bytes] = {}

    def chunk(delta: bytes, finish: bytes = b"null") -> bytes:
        tail = b'"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}\n\n'
        return head + tail % (delta, finish)

    out = [chunk(b'{"role":"assistant","content":""}')]
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        if word not in cache:
            cache[word] = chunk(b'{"content":%s}' % dumps(word))
        out.append(cache[word])
    out.append(chunk(b"{}", b'"stop"'))
    if usage:
        out.append(head + b'"choices":[],"usage":%s}\n\n' % dumps(_usage(n)))
    return out


def _usage(n: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}


def chat_completion(cid: str, created: int, model: str, n: int) -> bytes:
    message = {"role": "assistant", "content": completion_text(n)}
    return dumps({
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(n),
    })
