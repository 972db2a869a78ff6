"""ServerProtocol over real sockets: keep-alive, pipelining, HTTP/1.0, 100-continue, limits."""

from __future__ import annotations

import contextlib
import json
import socket

import h11

from relay.config import Limits, Timeouts
from relay.mock import completion_text

from ..conftest import MockServer, RelayFactory
from ..support import (
    H11Client,
    LoopThread,
    chat_body,
    connect,
    read_until_close,
    sse_data,
    wait_until,
)


def test_200_sequential_requests_on_one_connection(mock_server: MockServer,
                                                   make_relay: RelayFactory,
                                                   lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    for i in range(200):
        stream = i % 2 == 0
        client.send(b"POST", b"/v1/chat/completions", chat_body(3, stream=stream))
        reply = client.read_reply()
        assert reply.status == 200
        if stream:
            assert reply.headers[b"transfer-encoding"] == b"chunked"
            assert sse_data(reply.body)[-1] == b"[DONE]"
        else:
            assert json.loads(reply.body)["object"] == "chat.completion"
        client.next_cycle()
    # One client connection and one upstream connection served all 200.
    assert mock_server.mock.requests == 200
    assert lt.call(lambda: relay.pool.created) == 1


def test_20_pipelined_requests_answered_in_order(mock_server: MockServer,
                                                 make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    bodies = [chat_body(n + 1, stream=n % 3 != 0) for n in range(20)]
    writer = h11.Connection(h11.CLIENT)
    raw = b""
    for body in bodies:  # all 20 requests in one write, before reading anything
        hdrs = [(b"host", b"x"), (b"content-length", b"%d" % len(body))]
        raw += writer.send(h11.Request(method=b"POST", target=b"/v1/chat/completions",
                                       headers=hdrs)) or b""
        raw += (writer.send(h11.Data(data=body)) or b"") + (writer.send(h11.EndOfMessage()) or b"")
        writer = h11.Connection(h11.CLIENT)  # a fresh one: we never read replies with it
    sock.sendall(raw)
    client = H11Client(sock)
    for n, body in enumerate(bodies):
        client.request_bytes(b"POST", b"/v1/chat/completions", body)  # advance h11's state only
        reply = client.read_reply()
        assert reply.status == 200
        if n % 3 != 0:
            text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                           for d in sse_data(reply.body)[:-1])
        else:
            text = json.loads(reply.body)["choices"][0]["message"]["content"]
        assert text == completion_text(n + 1), f"reply {n} out of order"
        client.next_cycle()


def test_http10_client_gets_close_delimited_stream(mock_server: MockServer,
                                                   make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    body = chat_body(5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
    raw = read_until_close(sock)  # the relay ends the body by closing
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert payload.endswith(b"data: [DONE]\n\n")
    assert len(sse_data(payload)) == 8  # role + 5 + finish + [DONE], with no chunk framing


def test_expect_100_continue_answered_at_once(mock_server: MockServer,
                                              make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port, timeout=2)
    body = chat_body(2, stream=False)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
                 b"content-length: %d\r\n\r\n" % len(body))
    assert sock.recv(100).startswith(b"HTTP/1.1 100 ")  # before we sent the body
    sock.sendall(body)
    assert b"200 OK" in sock.recv(65536)


def test_body_over_limit_gets_413_and_close(mock_server: MockServer,
                                            make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_body_size=1000))
    sock = connect(relay.port)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
    raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["type"] == "invalid_request_error"
    assert mock_server.mock.requests == 0


def test_chunked_body_over_limit_gets_413(mock_server: MockServer,
                                          make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_body_size=1000))
    sock = connect(relay.port)
    sock.sendall(b"POST /v1/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                 + b"%x\r\n%s\r\n" % (1500, b"a" * 1500))
    assert read_until_close(sock).startswith(b"HTTP/1.1 413 ")
    assert mock_server.mock.requests == 0


def test_garbage_gets_400_and_close(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    sock = connect(relay.port)
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in raw.lower()
    assert mock_server.mock.requests == 0


def test_oversized_head_gets_431(mock_server: MockServer, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url, limits=Limits(max_head_size=4096))
    sock = connect(relay.port)
    with contextlib.suppress(ConnectionError):
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8192)
    assert read_until_close(sock).startswith(b"HTTP/1.1 431 ")
    assert mock_server.mock.requests == 0


def test_unknown_path_is_404_json_and_never_upstream(mock_server: MockServer,
                                                     make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    for target in (b"/", b"/v2/models", b"/v1"):  # absolute-form: see tests/test_validate.py
        client.send(b"GET", target)
        reply = client.read_reply()
        assert reply.status == 404, target
        assert json.loads(reply.body)["error"]["code"] == "unknown_url"
        client.next_cycle()
    assert mock_server.mock.requests == 0


def test_healthz(make_relay: RelayFactory) -> None:
    relay = make_relay()
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/healthz")
    reply = client.read_reply()
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc["status"] == "ok"
    # this connection is the one open; the embedded mock served nothing through the pool yet
    assert doc["client_connections"] == 1 and doc["upstream_open"] == 0
    client.next_cycle()
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    client.read_reply()
    client.next_cycle()
    client.send(b"GET", b"/healthz")
    doc = json.loads(client.read_reply().body)
    assert doc["upstream_open"] == 1 and doc["upstream_idle"] == 1  # pooled, not in use


def test_idle_keepalive_connection_closed_after_timeout(make_relay: RelayFactory) -> None:
    relay = make_relay(timeouts=Timeouts(keepalive=0.2))
    sock = connect(relay.port, timeout=5)
    client = H11Client(sock)
    client.send(b"GET", b"/healthz")
    assert client.read_reply().status == 200
    sock.settimeout(3)
    assert sock.recv(10) == b""  # the relay closed the idle connection


def test_tcp_nodelay_on_relay_sockets(mock_server: MockServer, make_relay: RelayFactory,
                                      lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    client.read_reply()

    def nodelay() -> list[int]:
        socks = [c.transport.get_extra_info("socket") for c in relay.listener.connections]
        socks += [c.transport.get_extra_info("socket") for c in relay.pool._idle]
        return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in socks]

    assert wait_until(lambda: len(lt.call(nodelay)) == 2, 2)
    assert all(lt.call(nodelay))
