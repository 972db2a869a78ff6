"""The mock upstream, spoken to directly."""

from __future__ import annotations

import json
import time

import h11
import pytest

from relay.config import Limits, Timeouts
from relay.mock import MockUpstream, completion_text
from relay.net.listener import listen

from ..conftest import MockServer
from ..support import H11Client, LoopThread, Reply, chat_body, connect, sse_data
from ..support.sse_parser import SSEParser


def _chat(mock: MockServer, body: bytes,
          headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    client = H11Client(connect(mock.port))
    client.send(b"POST", b"/v1/chat/completions", body, headers)
    return client.read_reply()


def test_stream_shape(mock_server: MockServer) -> None:
    reply = _chat(mock_server, chat_body(3, stream_options={"include_usage": True}))
    assert reply.headers[b"content-type"] == b"text/event-stream"
    data = sse_data(reply.body)
    assert data[-1] == b"[DONE]"
    docs = [json.loads(d) for d in data[:-1]]
    assert [d["object"] for d in docs] == ["chat.completion.chunk"] * 6
    assert docs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [d["choices"][0]["delta"]["content"] for d in docs[1:4]] == ["Hello", " there", "!"]
    assert docs[4]["choices"][0]["finish_reason"] == "stop"
    assert docs[5]["choices"] == [] and docs[5]["usage"]["completion_tokens"] == 3
    assert len({d["id"] for d in docs}) == 1


def test_non_stream_completion(mock_server: MockServer) -> None:
    doc = json.loads(_chat(mock_server, chat_body(4, stream=False)).body)
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["content"] == "Hello there! This"


def test_status_switch(mock_server: MockServer) -> None:
    reply = _chat(mock_server, chat_body(), [(b"x-mock-status", b"401")])
    assert reply.status == 401
    assert json.loads(reply.body)["error"]["code"] == "invalid_api_key"


def test_delay_and_ttft(mock_server: MockServer) -> None:
    started = time.monotonic()
    _chat(mock_server, chat_body(2), [(b"x-mock-delay-ms", b"50"), (b"x-mock-ttft-ms", b"200")])
    # ttft 200 ms + 4 gaps of 50 ms (role, 2 tokens, finish, [DONE]); a lower bound only.
    assert time.monotonic() - started >= 0.4


def test_fail_after_cuts_the_body(mock_server: MockServer) -> None:
    client = H11Client(connect(mock_server.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(10), [(b"x-mock-fail-after", b"2")])
    with pytest.raises(h11.RemoteProtocolError):  # the body was cut, never ended cleanly
        client.read_reply()


def test_timestamps(mock_server: MockServer) -> None:
    before = time.time()
    reply = _chat(mock_server, chat_body(2), [(b"x-mock-timestamps", b"1")])
    stamps = [json.loads(d)["mock_sent_at"] for d in sse_data(reply.body)[:-1]]
    assert len(stamps) == 4 and all(before <= s <= time.time() for s in stamps)


def test_bad_json_is_400(mock_server: MockServer) -> None:
    assert _chat(mock_server, b"{not json").status == 400


def test_unknown_route_is_404(mock_server: MockServer) -> None:
    client = H11Client(connect(mock_server.port))
    client.send(b"GET", b"/v1/nothing")
    assert client.read_reply().status == 404


def _post(mock: MockServer, path: bytes, doc: dict[str, object],
          headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    client = H11Client(connect(mock.port))
    client.send(b"POST", path, json.dumps(doc).encode(), headers)
    return client.read_reply()


def test_responses_stream_is_typed_and_numbered(mock_server: MockServer) -> None:
    reply = _post(mock_server, b"/v1/responses", {"model": "m", "input": "hi", "stream": True,
                                                   "max_output_tokens": 3})
    events = SSEParser().feed(reply.body)
    types = [e.event for e in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    docs = [json.loads(e.data) for e in events]
    assert [d["sequence_number"] for d in docs] == list(range(len(docs)))
    assert [d["type"] for d in docs] == types  # the data says its own type too
    assert "".join(d["delta"] for d in docs if "delta" in d) == completion_text(3)
    assert docs[-1]["response"]["status"] == "completed"
    assert b"[DONE]" not in reply.body  # the Responses API ends with response.completed


def test_responses_and_legacy_completions_whole(mock_server: MockServer) -> None:
    doc = json.loads(_post(mock_server, b"/v1/responses", {"input": "hi",
                                                           "max_output_tokens": 5}).body)
    assert doc["object"] == "response" and doc["status"] == "completed"
    assert doc["output"][0]["content"][0]["text"] == completion_text(5)
    doc = json.loads(_post(mock_server, b"/v1/completions", {"prompt": "hi",
                                                             "max_tokens": 4}).body)
    assert doc["object"] == "text_completion" and doc["choices"][0]["text"] == completion_text(4)


def test_legacy_completions_stream(mock_server: MockServer) -> None:
    reply = _post(mock_server, b"/v1/completions", {"prompt": "hi", "max_tokens": 3,
                                                    "stream": True})
    data = sse_data(reply.body)
    assert data[-1] == b"[DONE]"
    docs = [json.loads(d) for d in data[:-1]]
    assert [d["object"] for d in docs] == ["text_completion"] * 4
    assert "".join(d["choices"][0]["text"] for d in docs) == completion_text(3)
    assert docs[-1]["choices"][0]["finish_reason"] == "stop"


def test_the_mock_paces_like_a_model_when_asked(lt: LoopThread) -> None:
    """``relay serve`` with no upstream starts the mock with a default pause between events, so
    ``make run`` plus curl shows tokens arriving one by one; a request's header wins."""
    mock = MockUpstream(delay_ms=40)
    listener = lt.run(listen(mock, "127.0.0.1", 0, Limits(), Timeouts()))
    try:
        started = time.monotonic()
        reply = _chat(MockServer(mock, listener.port), chat_body(5))
        paced = time.monotonic() - started
        assert paced >= 7 * 0.040  # 8 events, 40 ms apart: the timers run at least that long
        assert sse_data(reply.body)[-1] == b"[DONE]"
        started = time.monotonic()
        _chat(MockServer(mock, listener.port), chat_body(5), [(b"x-mock-delay-ms", b"0")])
        assert time.monotonic() - started < paced / 2  # back to back: no timer at all
    finally:
        lt.call(listener.close)


@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/completions", b"/v1/responses"])
def test_the_default_answer_is_whole_sentences(mock_server: MockServer, path: bytes) -> None:
    """A request that names no token count gets two whole sentences, not one cut off in the
    middle (a first stream that looked broken); more tokens repeat them, spaced."""
    client = H11Client(connect(mock_server.port))
    client.send(b"POST", path, json.dumps({"model": "m", "stream": True}).encode())
    docs = [json.loads(d) for d in sse_data(client.read_reply().body) if d != b"[DONE]"]
    if path == b"/v1/responses":
        text = next(d["text"] for d in docs if d["type"] == "response.output_text.done")
    elif path == b"/v1/completions":
        text = "".join(d["choices"][0]["text"] for d in docs)
    else:
        text = "".join(d["choices"][0]["delta"].get("content", "") for d in docs if d["choices"])
    assert text == "Hello there! This is the relay mock, streaming one token at a time."
    assert completion_text(32) == text + " " + text
