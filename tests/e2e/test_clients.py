"""Real SSE clients through the relay (the openai SDK and curl are in test_stream.py)."""

from __future__ import annotations

import http.client
import json
import subprocess

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from relay.mock import completion_text

from ..conftest import MockServer, RelayFactory
from ..support import (
    chat_body,
    require_tool,
    sse_data,
)
from ..support.sse_parser import SSEParser


def test_httpx_sse(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    body = {"model": "m", "stream": True, "max_tokens": 12, "messages": [],
            "stream_options": {"include_usage": True}}
    with httpx.Client(base_url=f"http://127.0.0.1:{relay.port}") as client, \
         connect_sse(client, "POST", "/v1/chat/completions", json=body) as source:
        data = [sse.data for sse in source.iter_sse()]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == completion_text(12)
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_raw_http_client(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    body = json.dumps({"model": "m", "stream": True, "max_tokens": 5, "messages": []})
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked"
    parser = SSEParser()
    events = []
    while chunk := resp.read1(65536):  # read1: each piece as it arrives, no waiting for all
        events += parser.feed(chunk)
    conn.close()
    assert events[-1].data == "[DONE]" and len(events) == 8  # role + 5 + finish + [DONE]


def test_openai_sdk_streams_every_chunk(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{relay.port}/v1", api_key="unused",
                           max_retries=0)
    stream = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hi"}], stream=True,
        max_tokens=25, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    # role chunk + 25 content chunks + finish chunk + usage chunk
    assert len(chunks) == 28
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion_text(25)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 25

def test_openai_sdk_non_streaming(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{relay.port}/v1", api_key="unused",
                           max_retries=0)
    done = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=7)
    assert done.choices[0].message.content == completion_text(7)
    assert [m.id for m in client.models.list()] == ["mock-gpt"]

def test_curl_output_byte_identical_to_direct(mock_server: MockServer,
                                              make_relay: RelayFactory) -> None:
    curl = require_tool("curl")
    relay = make_relay(mock_server.url)
    args = ["-sN", "-H", "content-type: application/json", "-H", "x-mock-created: 1700000000",
            "-d", chat_body(40).decode()]
    direct = subprocess.run([curl, *args, f"{mock_server.url}/v1/chat/completions"],
                            capture_output=True, check=True, timeout=30).stdout
    relayed = subprocess.run([curl, *args, f"http://127.0.0.1:{relay.port}/v1/chat/completions"],
                             capture_output=True, check=True, timeout=30).stdout
    assert len(sse_data(direct)) == 43  # role + 40 + finish + [DONE]
    assert relayed == direct

def test_openai_sdk_sees_429(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{relay.port}/v1", api_key="unused",
                           max_retries=0, default_headers={"x-mock-status": "429"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[], stream=True)

def test_openai_sdk_raises_on_mid_stream_death(mock_server: MockServer,
                                               make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{relay.port}/v1", api_key="unused",
                           max_retries=0, default_headers={"x-mock-fail-after": "5"})
    stream = client.chat.completions.create(model="m", messages=[], stream=True, max_tokens=20)
    got = []
    with pytest.raises(openai.APIError, match="upstream"):
        for chunk in stream:
            got.append(chunk)
    assert len(got) == 5
