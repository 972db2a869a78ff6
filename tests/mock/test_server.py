"""The mock upstream, spoken to directly."""

from __future__ import annotations

import json
import time

import h11
import pytest

from ..conftest import MockServer
from ..support import H11Client, Reply, chat_body, connect, sse_data


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
