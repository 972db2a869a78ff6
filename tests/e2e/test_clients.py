"""Real SSE clients through the relay (the openai SDK and curl are in test_stream.py)."""

from __future__ import annotations

import http.client
import json

import httpx
from httpx_sse import connect_sse

from relay.mock import completion_text

from ..conftest import MockServer, RelayFactory
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
