"""Real clients through the relay: the openai SDK (chat, the Responses API, legacy
completions), httpx-sse, http.client, curl."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
from collections.abc import Iterator

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from relay.config import Timeouts
from relay.http1.sse import HEARTBEAT
from relay.mock import completion_text
from relay.mock.generate import response_events

from ..conftest import MockServer, RelayFactory, ScriptedFactory
from ..support import (
    SSE_HEAD,
    H11Client,
    UpstreamConn,
    chat_body,
    chunked,
    connect,
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


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """Every SDK client a test made is closed after it (an unclosed one leaves its socket to
    the garbage collector, whose ResourceWarning then fails whichever test runs at the time)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _sdk(relay_port: int, headers: dict[str, str] | None = None) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{relay_port}/v1", api_key="unused",
                           max_retries=0, default_headers=headers)
    _CLIENTS.append(client)
    return client


def test_openai_sdk_streams_every_chunk(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = _sdk(relay.port)
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
    client = _sdk(relay.port)
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
    client = _sdk(relay.port, {"x-mock-status": "429"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[], stream=True)

def test_openai_sdk_raises_on_mid_stream_death(mock_server: MockServer,
                                               make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = _sdk(relay.port, {"x-mock-fail-after": "5"})
    stream = client.chat.completions.create(model="m", messages=[], stream=True, max_tokens=20)
    got = []
    with pytest.raises(openai.APIError, match="upstream"):
        for chunk in stream:
            got.append(chunk)
    assert len(got) == 5




def test_openai_sdk_responses_api(mock_server: MockServer, make_relay: RelayFactory) -> None:
    client = _sdk(make_relay(mock_server.url).port)
    stream = client.responses.create(model="mock-gpt", input="hi", stream=True,
                                     max_output_tokens=12)
    events = list(stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == completion_text(12)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    whole = client.responses.create(model="mock-gpt", input="hi", max_output_tokens=5)
    assert whole.output_text == completion_text(5)


def test_openai_sdk_legacy_completions(mock_server: MockServer, make_relay: RelayFactory) -> None:
    client = _sdk(make_relay(mock_server.url).port)
    done = client.completions.create(model="mock-gpt", prompt="hi", max_tokens=7)
    assert done.choices[0].text == completion_text(7)
    chunks = list(client.completions.create(model="mock-gpt", prompt="hi", max_tokens=9,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == completion_text(9)


def test_heartbeats_fall_between_typed_events_never_inside_one(
        scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    """Typed events have two lines: ``event:`` then ``data:``. The upstream pauses between
    the two (longer than the heartbeat period) and between events: heartbeats go only where a
    blank line ended an event, and the SDK sees every event."""
    events = response_events("resp_0123456789abcdef01234567", 0, "m", 2)
    first_event_line, first_data = events[0].split(b"\n", 1)

    async def script(c: UpstreamConn) -> None:
        while await c.read_request():
            c.write(SSE_HEAD + chunked(first_event_line + b"\n"))
            await asyncio.sleep(0.35)  # inside the first event
            c.write(chunked(first_data))
            for event in events[1:]:
                await asyncio.sleep(0.15)  # between events
                c.write(chunked(event))
            c.write(b"0\r\n\r\n")

    relay = make_relay(scripted(script).url, timeouts=Timeouts(heartbeat=0.1))
    raw = H11Client(connect(relay.port, timeout=20))
    raw.send(b"POST", b"/v1/responses", b'{"stream":true}')
    body = raw.read_reply().body
    assert body.replace(HEARTBEAT, b"") == b"".join(events)
    assert (first_event_line + b"\n" + first_data) in body  # nothing between its two lines
    assert body.count(HEARTBEAT) >= 3
    for event in events:
        assert HEARTBEAT not in event
    sdk_events = list(_sdk(relay.port).responses.create(model="m", input="hi", stream=True))
    assert [e.type for e in sdk_events] == [json.loads(e.split(b"data: ", 1)[1])["type"]
                                            for e in events]
