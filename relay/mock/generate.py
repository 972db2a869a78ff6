"""What the mock generates, streamed or whole, in three OpenAI APIs:

* chat completions (``chat.completion`` / ``chat.completion.chunk`` events, ``data: [DONE]``);
* legacy completions (``text_completion``, ``data: [DONE]``);
* the Responses API (typed events: an ``event:`` line then its ``data:``, each with a
  ``sequence_number``, from ``response.created`` to ``response.completed``; no ``[DONE]``).

Events are pre-encoded bytes, built once per stream (repeated words are cached), because the
mock is the benchmarks' load source and must cost little per event. Every event's data ends
in ``}``, so a send time can be stamped into it (``x-mock-timestamps``).
"""

from __future__ import annotations

import json
from typing import Any

# The answer's tokens: two whole sentences, as many as a request that names no count gets, so a
# first stream ends at a sentence's end, not in the middle of one. More tokens repeat them.
WORDS = (
    "Hello", " there", "!", " This", " is", " the", " relay", " mock", ",", " streaming",
    " one", " token", " at", " a", " time", ".",
)
DEFAULT_TOKENS = len(WORDS)
DONE = b"data: [DONE]\n\n"


def word(i: int) -> str:
    """Token ``i`` of the answer (a repeat of the sentences starts with a space)."""
    text = WORDS[i % len(WORDS)]
    return " " + text if i and not i % len(WORDS) else text


def completion_text(max_tokens: int) -> str:
    """The text the mock generates for ``max_tokens`` tokens (tests compare against it)."""
    return "".join(word(i) for i in range(max_tokens))


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
        text = word(i)
        if text not in cache:
            cache[text] = chunk(b'{"content":%s}' % dumps(text))
        out.append(cache[text])
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


def text_events(cid: str, created: int, model: str, n: int) -> list[bytes]:
    """A legacy completion stream: one ``text_completion`` chunk per token, then the finish."""
    head = b'data: {"id":"%s","object":"text_completion","created":%d,"model":%s,' % (
        cid.encode(), created, dumps(model))

    def chunk(text: str, finish: bytes = b"null") -> bytes:
        return head + b'"choices":[{"text":%s,"index":0,"logprobs":null,"finish_reason":%s}]}' \
            b"\n\n" % (dumps(text), finish)

    return [chunk(word(i)) for i in range(n)] + [chunk("", b'"stop"')]


def text_completion(cid: str, created: int, model: str, n: int) -> bytes:
    return dumps({
        "id": cid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"text": completion_text(n), "index": 0, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": _usage(n),
    })


def response_document(rid: str, created: int, model: str, n: int, done: bool = True
                      ) -> dict[str, Any]:
    """A Responses API ``response`` object: in progress and empty, or completed with its
    message."""
    output = [_message(rid, completion_text(n), "completed")] if done else []
    usage = {"input_tokens": 8, "output_tokens": n, "total_tokens": 8 + n,
             "input_tokens_details": {"cached_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}
    return {"id": rid, "object": "response", "created_at": created, "model": model,
            "status": "completed" if done else "in_progress", "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": usage if done else None, "error": None, "incomplete_details": None}


def _message(rid: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": "msg_" + rid[5:], "type": "message", "status": status, "role": "assistant",
            "content": content if text or status == "completed" else []}


def response_events(rid: str, created: int, model: str, n: int) -> list[bytes]:
    """A Responses API stream: typed events, each with its ``sequence_number``."""
    item = "msg_" + rid[5:]
    where = {"item_id": item, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    text = completion_text(n)
    docs: list[dict[str, Any]] = [
        {"type": "response.created", "response": response_document(rid, created, model, n, False)},
        {"type": "response.in_progress",
         "response": response_document(rid, created, model, n, False)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": _message(rid, "", "in_progress")},
        {"type": "response.content_part.added", **where, "part": part},
        *({"type": "response.output_text.delta", **where, "delta": word(i),
           "logprobs": []} for i in range(n)),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": _message(rid, text, "completed")},
        {"type": "response.completed", "response": response_document(rid, created, model, n)},
    ]
    return [b"event: %s\ndata: %s\n\n" % (doc["type"].encode(),
                                          dumps({**doc, "sequence_number": seq}))
            for seq, doc in enumerate(docs)]
