"""The Host check (DNS rebinding) and the Origin check (drive-by pages): alone, then over real
sockets, where nothing refused may reach the upstream."""

from __future__ import annotations

import json

import pytest

from relay.cors import Cors, normalize_origin
from relay.guard import Guard, is_loopback, split_host

from .conftest import RelayFactory, ScriptedFactory
from .support import H11Client, Received, answering, connect


def test_loopback_names_and_addresses() -> None:
    for host in ("localhost", "LOCALHOST", "app.localhost", "127.0.0.1", "127.1.2.3", "::1",
                 "[::1]", "localhost."):
        assert is_loopback(host), host
    for host in ("evil.example", "localhost.evil.example", "10.0.0.1", "0.0.0.0", "", "::"):
        assert not is_loopback(host), host


def test_host_and_origin_parsing() -> None:
    assert split_host("[::1]:8080") == ("::1", 8080)
    assert split_host("Relay.Example:443") == ("relay.example", 443)
    assert split_host("localhost") == ("localhost", None)
    assert normalize_origin("HTTPS://App.Example:443") == "https://app.example"
    assert normalize_origin("http://app.example:8080/") == "http://app.example:8080"
    for bad in ("null", "file://", "ftp://x", "http://x/path", "http://[::1", ""):
        assert normalize_origin(bad) == "", bad


def _check(guard: Guard, host: bytes, origin: bytes | None = None) -> int | None:
    verdict = guard.check(host, origin)
    return None if verdict is None else verdict.status


def test_the_rules() -> None:
    on_loopback = Guard("127.0.0.1")
    assert _check(on_loopback, b"localhost:8080") is None
    assert _check(on_loopback, b"evil.example") == 421
    assert on_loopback.check(None, None) is None  # no Host at all: HTTP/1.0, never a browser
    allowed = Guard("127.0.0.1", ["relay.example:8080"])
    assert _check(allowed, b"relay.example") is None and _check(allowed, b"other") == 421
    everywhere = Guard("0.0.0.0")
    assert _check(everywhere, b"anything.example") is None  # not loopback: off by default
    assert _check(Guard("0.0.0.0", ["relay.example"]), b"anything.example") == 421
    # Origin: the relay's own (same host and port as Host), an allowed one, or refused.
    assert _check(on_loopback, b"127.0.0.1:8080", b"http://127.0.0.1:8080") is None
    assert _check(on_loopback, b"localhost", b"http://localhost:80") is None
    assert _check(on_loopback, b"localhost:8080", b"http://localhost:9090") == 403
    assert _check(on_loopback, b"localhost:8080", b"https://evil.example") == 403
    assert _check(on_loopback, b"localhost:8080", b"null") == 403
    listed = Guard("127.0.0.1", cors=Cors(["https://app.example"]))
    assert _check(listed, b"localhost", b"https://app.example") is None
    assert _check(listed, b"localhost", b"https://other.example") == 403
    assert _check(Guard("127.0.0.1", cors=Cors(["*"])), b"localhost", b"https://x") is None


@pytest.fixture
def upstream(scripted: ScriptedFactory) -> tuple[str, list[Received]]:
    received: list[Received] = []
    return scripted(answering(received)).url, received


@pytest.mark.parametrize(("host", "status"), [
    (b"evil.example", 421), (b"evil.example:8080", 421), (b"127.0.0.1.evil.example", 421),
    (b"localhost:1", 200), (b"127.0.0.1", 200), (b"[::1]:8080", 200), (b"app.localhost", 200),
])
def test_dns_rebinding_is_refused_before_anything_goes_upstream(
        host: bytes, status: int, upstream: tuple[str, list[Received]],
        make_relay: RelayFactory) -> None:
    url, received = upstream
    relay = make_relay(url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", b"{}", [(b"host", host)])
    reply = client.read_reply()
    assert reply.status == status
    if status == 421:
        assert json.loads(reply.body)["error"]["code"] == "host_not_allowed"
        assert received == []
    else:
        assert len(received) == 1


def test_allowed_hosts_are_served(upstream: tuple[str, list[Received]],
                                  make_relay: RelayFactory) -> None:
    url, _received = upstream
    relay = make_relay(url, allowed_hosts=("relay.example",))
    for host, status in ((b"relay.example:8080", 200), (b"other.example", 421),
                         (b"localhost", 200)):
        client = H11Client(connect(relay.port))
        client.send(b"GET", b"/v1/models", headers=[(b"host", host)])
        assert client.read_reply().status == status, host


def test_a_drive_by_page_cannot_spend_the_key(upstream: tuple[str, list[Received]],
                                              make_relay: RelayFactory) -> None:
    """What a foreign page's fetch(..., {method: "POST", body: "..."}) sends: a CORS "simple"
    request, with no preflight. Refused with 403 and never forwarded."""
    url, received = upstream
    relay = make_relay(url, api_key="sk-relay-secret")
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", b'{"stream":true}',
                [(b"content-type", b"text/plain;charset=UTF-8"),
                 (b"origin", b"https://evil.example")])
    reply = client.read_reply()
    assert reply.status == 403
    assert json.loads(reply.body)["error"]["code"] == "origin_not_allowed"
    assert received == []
    own = H11Client(connect(relay.port))  # the relay's own origin (its demo page) is served
    origin = b"http://127.0.0.1:%d" % relay.port
    own.send(b"POST", b"/v1/chat/completions", b"{}",
             [(b"host", b"127.0.0.1:%d" % relay.port), (b"origin", origin)])
    assert own.read_reply().status == 200 and len(received) == 1
