"""CORS: the allowlist, preflights answered by the relay (never forwarded), and the headers on
real responses, over real sockets."""

from __future__ import annotations

import pytest

from relay.cors import Cors

from .conftest import RelayFactory, ScriptedFactory
from .support import EventStream, H11Client, Received, Reply, answering, connect

APP = b"https://app.example"


def test_the_allowlist() -> None:
    cors = Cors(["https://App.Example:443", "http://localhost:3000"])
    assert cors.allows("https://app.example") and cors.allows("http://localhost:3000")
    assert not cors.allows("https://evil.example") and not cors.allows("null")
    assert Cors(["*"]).allows("https://anyone.example") and not Cors().enabled
    with pytest.raises(ValueError):
        Cors(["app.example"])  # not an origin: a clear error at startup


def _preflight(port: int, origin: bytes, headers: bytes = b"") -> Reply:
    client = H11Client(connect(port))
    hdrs = [(b"origin", origin), (b"access-control-request-method", b"POST")]
    if headers:
        hdrs.append((b"access-control-request-headers", headers))
    client.send(b"OPTIONS", b"/v1/chat/completions", headers=hdrs)
    return client.read_reply()


def test_preflights_are_answered_here_and_never_forwarded(scripted: ScriptedFactory,
                                                          make_relay: RelayFactory) -> None:
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url, cors_origins=(APP.decode(),))
    reply = _preflight(relay.port, APP, b"Authorization, Content-Type, X-Stainless-Lang, "
                       b"Last-Event-ID, X-Evil")
    assert reply.status == 204
    h = reply.headers
    assert h[b"access-control-allow-origin"] == APP and h[b"vary"] == b"Origin"
    assert h[b"access-control-allow-credentials"] == b"true"
    assert h[b"access-control-allow-methods"] == b"GET, POST, OPTIONS"
    assert h[b"access-control-allow-headers"] == (b"authorization, content-type, "
                                                  b"x-stainless-lang, last-event-id")
    assert h[b"access-control-max-age"] == b"600"
    assert _preflight(relay.port, b"https://evil.example").status == 403
    assert received == []  # neither preflight went upstream


def test_real_responses_carry_the_cors_headers(scripted: ScriptedFactory,
                                               make_relay: RelayFactory) -> None:
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url, cors_origins=(APP.decode(),))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", b"{}", [(b"origin", APP)])
    reply = client.read_reply()
    assert reply.status == 200 and len(received) == 1
    assert reply.headers[b"access-control-allow-origin"] == APP
    assert b"x-request-id" in reply.headers[b"access-control-expose-headers"]
    stream = EventStream(relay.port, b"/events/c", [(b"origin", APP)])
    assert stream.status == 200 and b"access-control-allow-origin: https://app.example" in (
        stream.head)


def test_a_wildcard_never_comes_with_credentials(make_relay: RelayFactory) -> None:
    relay = make_relay(cors_origins=("*",))
    reply = _preflight(relay.port, b"https://anyone.example", b"content-type")
    assert reply.status == 204 and reply.headers[b"access-control-allow-origin"] == b"*"
    assert b"access-control-allow-credentials" not in reply.headers
