"""Header rewriting: pure functions, then the same rules observed over the wire."""

from __future__ import annotations

import h11
import pytest

from relay.http1.headers import (
    client_response_headers,
    connection_tokens,
    is_event_stream,
    keeps_alive,
    strip_hop_by_hop,
    upstream_request_headers,
)

from ..conftest import RelayFactory, ScriptedFactory
from ..support import H11Client, Received, ScriptedUpstream, UpstreamConn, answering, connect

CLIENT_HEADERS = [
    (b"host", b"relay.local:8080"),
    (b"connection", b"keep-alive, x-private"),
    (b"keep-alive", b"timeout=5"),
    (b"te", b"trailers"),
    (b"trailer", b"x-checksum"),
    (b"upgrade", b"h2c"),
    (b"proxy-authorization", b"Basic Zm9vOmJhcg=="),
    (b"proxy-connection", b"keep-alive"),
    (b"x-private", b"only-for-this-hop"),
    (b"authorization", b"Bearer client-token"),
    (b"accept-encoding", b"gzip, br"),
    (b"content-type", b"application/json"),
    (b"openai-organization", b"org-1"),
    (b"content-length", b"999"),
]


def test_connection_tokens_are_lowercased_and_trimmed() -> None:
    assert connection_tokens([(b"connection", b" Keep-Alive ,X-Foo,, ")]) == {b"keep-alive",
                                                                             b"x-foo"}


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("connection", [None, b"close", b"Close", b"keep-alive", b"x, close",
                                        b" CLOSE ,te", b"closed", b"keep-alive, upgrade"])
@pytest.mark.parametrize("upgrade", [None, b"h2c", b"websocket"])
def test_keep_alive_is_decided_as_h11_decides_it(version: bytes, connection: bytes | None,
                                                 upgrade: bytes | None) -> None:
    """The relay decides it for bodies h11 no longer reads: the same answer as h11's own
    (which ends a connection whose request asked for an Upgrade, never done here)."""
    head = b"GET / HTTP/%s\r\nhost: x\r\n" % version
    if connection is not None:
        head += b"connection: %s\r\n" % connection
    if upgrade is not None:
        head += b"upgrade: %s\r\n" % upgrade
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head + b"\r\n")
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    assert keeps_alive(request.http_version, request.headers) is (conn.their_state is h11.DONE)
    assert upgrade is None or conn.their_state is not h11.DONE  # (the cases do differ)


def test_strip_hop_by_hop_removes_listed_and_proxy_headers() -> None:
    names = [n for n, _ in strip_hop_by_hop(CLIENT_HEADERS)]
    assert names == [b"host", b"authorization", b"accept-encoding", b"content-type",
                     b"openai-organization", b"content-length"]


def test_upstream_request_headers_with_key() -> None:
    out = upstream_request_headers(CLIENT_HEADERS, host=b"api.example.com", body_length=12,
                                   api_key="sk-secret")
    assert out == [
        (b"host", b"api.example.com"),
        (b"content-type", b"application/json"),
        (b"openai-organization", b"org-1"),
        (b"content-length", b"12"),
        (b"accept-encoding", b"identity"),
        (b"authorization", b"Bearer sk-secret"),
    ]


def test_upstream_request_headers_without_key_keeps_client_auth() -> None:
    out = dict(upstream_request_headers(CLIENT_HEADERS, host=b"h", body_length=0, api_key=None))
    assert out[b"authorization"] == b"Bearer client-token"
    assert b"content-length" not in out


def test_client_response_headers() -> None:
    upstream = [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked"),
                (b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5"),
                (b"content-length", b"10"), (b"x-request-id", b"abc"),
                (b"proxy-authenticate", b"Basic")]
    assert client_response_headers(upstream) == [(b"content-type", b"text/event-stream"),
                                                 (b"x-request-id", b"abc")]


def test_is_event_stream() -> None:
    assert is_event_stream([(b"content-type", b"Text/Event-Stream; charset=utf-8")])
    assert not is_event_stream([(b"content-type", b"application/json")])
    assert not is_event_stream([])


def test_headers_over_the_wire(scripted: ScriptedFactory, make_relay: RelayFactory) -> None:
    """What the upstream receives and what the client gets back, through real sockets."""

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\n"
                b"keep-alive: timeout=5\r\nproxy-authenticate: Basic\r\nx-upstream: yes\r\n"
                b"content-length: 2\r\n\r\n{}")
        await c.writer.drain()
        await c.watch_close()

    up: ScriptedUpstream = scripted(script)
    relay = make_relay(up.url, api_key="sk-test-key")
    client = H11Client(connect(relay.port))
    body = b'{"a":1}'
    hdrs = [(n, v) for n, v in CLIENT_HEADERS if n not in (b"host", b"content-length")]
    client.send(b"PATCH", b"/v1/things/7?limit=3&order=desc", body, hdrs)
    reply = client.read_reply()

    seen = up.connections[0]
    assert seen.request_line == b"PATCH /v1/things/7?limit=3&order=desc HTTP/1.1"
    assert seen.body == body
    assert seen.headers[b"host"] == f"127.0.0.1:{up.port}".encode()
    assert seen.headers[b"authorization"] == b"Bearer sk-test-key"
    assert seen.headers[b"accept-encoding"] == b"identity"
    assert seen.headers[b"content-length"] == b"7"
    assert seen.headers[b"openai-organization"] == b"org-1"
    for hop in (b"connection", b"keep-alive", b"te", b"trailer", b"upgrade",
                b"proxy-authorization", b"proxy-connection", b"x-private"):
        assert hop not in seen.headers, hop

    assert reply.status == 200 and reply.body == b"{}"
    assert reply.headers[b"x-upstream"] == b"yes"
    assert reply.headers[b"content-length"] == b"2"
    assert b"keep-alive" not in reply.headers
    assert b"proxy-authenticate" not in reply.headers


def test_names_with_an_underscore_are_never_forwarded(scripted: ScriptedFactory,
                                                      make_relay: RelayFactory) -> None:
    """nginx's default (underscores_in_headers off): dropped, not refused. To a server that maps
    "-" to "_" (CGI, some frameworks), ``X_Api_Key`` would pass for ``X-Api-Key``."""
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/x", b"{}", [(b"x_api_key", b"smuggled"), (b"x-api-key", b"real"),
                                           (b"x_forwarded_for", b"1.2.3.4")])
    assert client.read_reply().status == 200
    [got] = received
    assert got.headers[b"x-api-key"] == b"real"
    assert b"smuggled" not in got.head and b"x_forwarded_for" not in got.head
