"""The Host check (DNS rebinding) and the Origin check (drive-by pages): alone, then over real
sockets, where nothing refused may reach the upstream."""

from __future__ import annotations

import json

import pytest

from relay.cors import Cors, normalize_origin, parse_origin
from relay.guard import Guard, is_loopback, split_host

from .conftest import RelayFactory, ScriptedFactory
from .support import H11Client, Received, answering, connect, scrape
from .support.processes import spawn
from .test_router import read_reply_bytes


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


# What a parser that skips userinfo (urllib's hostname, for one) reads as
# https://app.example, and the rest of what no browser sends as an Origin.
ATTACKS = ("https://evil.example@app.example", "https://evil.example\\@app.example",
           "https://@app.example", "https://app.example@app.example", "https://app.example/",
           "https://app.example/x", "https://app.example?x", "https://app.example#x",
           "https://app.example\\", "https://app.example\\x", " https://app.example",
           "https://app.example:", "https://app.example:99999", "https://app.ex ample",
           "https://app.exämple", "https://[::1", "https://[::g]", "ftp://app.example", "null",
           "app.example", "")


def test_origins_are_parsed_as_browsers_serialize_them() -> None:
    """scheme://host[:port], nothing else; case and default ports as a URL parser has them."""
    for attack in ATTACKS:
        assert parse_origin(attack) == "", attack
        assert not Cors(["https://app.example"]).allows(attack), attack
        assert not Cors(["*"]).allows(attack), attack
    assert parse_origin("https://app.example") == "https://app.example"
    assert parse_origin("https://app.example:443") == "https://app.example"
    assert parse_origin("http://app.example:80") == "http://app.example"
    assert parse_origin("http://app.example:443") == "http://app.example:443"
    assert parse_origin("HTTPS://App.Example:8443") == "https://app.example:8443"
    assert parse_origin("http://[0:0::1]:8080") == "http://[::1]:8080"
    assert parse_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    listed = Guard("127.0.0.1", cors=Cors(["https://app.example"]))
    for attack in ATTACKS[:4]:
        assert _check(listed, b"localhost", attack.encode()) == 403, attack
    # Nor does userinfo make a foreign origin the relay's own.
    assert _check(listed, b"127.0.0.1:8080", b"http://evil.example@127.0.0.1:8080") == 403


def _check(guard: Guard, host: bytes | None, origin: bytes | None = None,
           fetch_site: bytes | None = None, method: bytes = b"POST",
           path: bytes = b"/v1/chat/completions") -> int | None:
    verdict = guard.check(host, origin, fetch_site, method, path)
    return None if verdict is None else verdict.status


def test_no_cors_requests_from_other_sites() -> None:
    """No Origin but Sec-Fetch-Site: cross-site (or same-site): an <img>, a link, a no-cors
    fetch. Refused where the key is spent or a client acted for; the rest stays open."""
    guard = Guard("127.0.0.1", cors=Cors(["https://app.example"]))
    for site in (b"cross-site", b"same-site", b"Cross-Site"):
        for method, path in ((b"GET", b"/v1/models"), (b"POST", b"/v1/chat/completions"),
                             (b"GET", b"/v1/streams/abc"), (b"POST", b"/events/news")):
            assert _check(guard, b"localhost", None, site, method, path) == 403, (site, path)
        for method, path in ((b"GET", b"/events/news"), (b"GET", b"/"),
                             (b"GET", b"/healthz")):
            assert _check(guard, b"localhost", None, site, method, path) is None, (site, path)
        # With an allowed Origin, a cross-site request is a CORS one: the Origin check decides.
        assert _check(guard, b"localhost", b"https://app.example", site) is None
        assert _check(guard, b"localhost", b"https://evil.example", site) == 403
    for site in (b"same-origin", b"none", None):  # the relay's own page; a typed URL; no browser
        assert _check(guard, b"localhost", None, site, b"GET", b"/v1/models") is None, site


def test_the_rules() -> None:
    on_loopback = Guard("127.0.0.1")
    assert _check(on_loopback, b"localhost:8080") is None
    assert _check(on_loopback, b"evil.example") == 421
    assert _check(on_loopback, None) is None  # no Host at all: HTTP/1.0, never a browser
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


@pytest.mark.parametrize("origin", [b"https://evil.example@app.example",
                                    b"https://evil.example\\@app.example"])
def test_an_origin_with_userinfo_is_refused_and_never_echoed(
        origin: bytes, upstream: tuple[str, list[Received]], make_relay: RelayFactory) -> None:
    """A parser that skips userinfo reads these as the allowed https://app.example: the
    request went upstream and the answer echoed the attacker's value with credentials."""
    url, received = upstream
    relay = make_relay(url, api_key="sk-relay-secret", cors_origins=("https://app.example",))
    for method, headers in ((b"POST", [(b"origin", origin)]),
                            (b"OPTIONS", [(b"origin", origin),
                                          (b"access-control-request-method", b"POST")])):
        client = H11Client(connect(relay.port))
        client.send(method, b"/v1/chat/completions", b"{}" if method == b"POST" else b"",
                    headers)
        reply = client.read_reply()
        assert reply.status == 403, method
        assert json.loads(reply.body)["error"]["code"] == "origin_not_allowed"
        assert b"access-control-allow-origin" not in reply.headers
    assert received == []
    # The allowed origin with its default port written out is that origin, echoed as browsers
    # write it (what the browser compares).
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", b"{}",
                [(b"origin", b"https://app.example:443")])
    reply = client.read_reply()
    assert reply.status == 200 and len(received) == 1
    assert reply.headers[b"access-control-allow-origin"] == b"https://app.example"


def _no_cors(path: bytes, site: bytes, method: bytes = b"GET", body: bytes = b"") -> bytes:
    """What a browser sends for an <img src> (GET) of another site: no Origin."""
    length = b"content-length: %d\r\n" % len(body) if method != b"GET" else b""
    return (method + b" " + path + b" HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: image/*\r\n"
            b"sec-fetch-site: " + site + b"\r\nsec-fetch-mode: no-cors\r\n" + length + b"\r\n"
            + body)


def _status(port: int, request: bytes) -> tuple[int, bytes]:
    with connect(port) as sock:
        sock.sendall(request)
        reply = read_reply_bytes(sock)
    return int(reply.split(b" ", 2)[1]), reply


def test_a_cross_site_get_with_no_origin_never_reaches_the_upstream(
        scripted: ScriptedFactory) -> None:
    """A page's <img src=".../v1/models"> sends no Origin, only Sec-Fetch-Site. The same bytes
    three times (the head known after the first): 403 each time, nothing upstream, where the
    key would have been spent."""
    received: list[Received] = []
    up = scripted(answering(received))
    with spawn("serve", "--port", "0", "--upstream", up.url,
               env={"OPENAI_API_KEY": "sk-live-SECRET"}) as (_proc, port, _lines):
        for site in (b"cross-site", b"same-site"):
            for _ in range(3):
                status, reply = _status(port, _no_cors(b"/v1/models", site))
                assert status == 403, reply
                error = json.loads(reply.partition(b"\r\n\r\n")[2])["error"]
                assert error["code"] == "origin_not_allowed", error
                assert "no Origin" in error["message"], error
        assert received == []
        for site in (b"same-origin", b"none"):  # the relay's own page; the user typed the URL
            assert _status(port, _no_cors(b"/v1/models", site))[0] == 200
        assert len(received) == 2
        assert received[0].headers[b"authorization"] == b"Bearer sk-live-SECRET"


def test_a_cross_site_publish_is_refused_also_when_its_head_is_known(
        make_relay: RelayFactory) -> None:
    """A known head's publish is answered directly (Router.direct, by the plan Router._plan
    keeps for it): that plan refuses what the usual way refuses, every time."""
    relay = make_relay()
    body = b'{"data": "hi"}'
    for _ in range(3):
        status, reply = _status(relay.port, _no_cors(b"/events/news", b"cross-site", b"POST",
                                                     body))
        assert status == 403, reply
    assert scrape(relay.port).get("relay_channel_publishes_total", 0) == 0
    for _ in range(3):  # the same publish from the relay's own page: answered, directly
        assert _status(relay.port, _no_cors(b"/events/news", b"same-origin", b"POST",
                                            body))[0] == 200
    assert scrape(relay.port)["relay_channel_publishes_total"] == 3
