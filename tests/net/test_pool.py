"""Upstream connections and the pool: TLS verification, idle expiry, what is never reused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.config import Limits, Timeouts
from relay.mock import MockUpstream, completion_text
from relay.net.listener import Listener, listen

from ..conftest import RelayFactory
from ..support import H11Client, LoopThread, chat_body, connect, sse_data, wait_until
from ..support.tls import TLSFiles, make_tls


@pytest.fixture
def tls_mock(lt: LoopThread, tls: TLSFiles) -> Iterator[tuple[int, Path]]:
    """The mock upstream over TLS with a certificate for 127.0.0.1 from a private CA."""
    listener: Listener = lt.run(listen(MockUpstream(), "127.0.0.1", 0, Limits(), Timeouts(),
                                       tls.server_context()))
    yield listener.port, tls.ca_pem
    lt.call(listener.close)


def test_tls_upstream_with_private_ca(tls_mock: tuple[int, Path],
                                      make_relay: RelayFactory) -> None:
    port, ca_file = tls_mock
    relay = make_relay(f"https://127.0.0.1:{port}", upstream_ca=str(ca_file))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(6))
    reply = client.read_reply()
    assert reply.status == 200
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                   for d in sse_data(reply.body)[:-1])
    assert text == completion_text(6)


def test_tls_upstream_with_wrong_ca_is_502(tls_mock: tuple[int, Path],
                                           make_relay: RelayFactory, lt: LoopThread) -> None:
    port, _ = tls_mock
    relay = make_relay(f"https://127.0.0.1:{port}")  # certifi's roots: must not trust it
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(6))
    reply = client.read_reply()
    assert reply.status == 502
    err = json.loads(reply.body)["error"]
    assert err["code"] == "upstream_connect_failed"
    assert "TLS verification" in err["message"]
    # the failed connect (its protocol was made, the handshake failed) is counted closed once
    assert lt.call(lambda: relay.pool.open) == 0


def test_tls_hostname_is_checked(lt: LoopThread, tmp_path: Path,
                                 make_relay: RelayFactory) -> None:
    """A certificate from a trusted CA but for another name is refused too."""
    other = make_tls(tmp_path, "other.example")
    listener: Listener = lt.run(listen(MockUpstream(), "127.0.0.1", 0, Limits(), Timeouts(),
                                       other.server_context()))
    try:
        relay = make_relay(f"https://127.0.0.1:{listener.port}", upstream_ca=str(other.ca_pem))
        client = H11Client(connect(relay.port))
        client.send(b"GET", b"/v1/models")
        reply = client.read_reply()
        assert reply.status == 502
        assert "TLS verification" in json.loads(reply.body)["error"]["message"]
    finally:
        lt.call(listener.close)


def test_idle_upstream_connections_expire(make_relay: RelayFactory, lt: LoopThread) -> None:
    relay = make_relay(limits=Limits(pool_idle_timeout=0.2))
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/v1/models")
    assert client.read_reply().status == 200
    assert lt.call(lambda: relay.pool.idle_count) == 1
    assert wait_until(lambda: lt.call(lambda: relay.pool.idle_count) == 0, 3)


def test_pool_keeps_at_most_pool_size_idle(make_relay: RelayFactory, lt: LoopThread) -> None:
    relay = make_relay(limits=Limits(pool_size=2))
    socks = [connect(relay.port) for _ in range(4)]
    clients = [H11Client(s) for s in socks]
    for c in clients:  # four concurrent streams need four upstream connections
        c.send(b"POST", b"/v1/chat/completions", chat_body(20),
               [(b"x-mock-delay-ms", b"20")])
    for c in clients:
        assert c.read_reply().status == 200
    assert lt.call(lambda: relay.pool.created) == 4
    assert lt.call(lambda: relay.pool.idle_count) == 2


def test_upstream_sockets_cap_their_receive_buffer(make_relay: RelayFactory,
                                                   lt: LoopThread) -> None:
    """SO_RCVBUF bounds one upstream read, hence what a paused stream holds (Limits docs)."""
    import socket as socket_module

    relay = make_relay(limits=Limits(upstream_rcvbuf=32 * 1024))
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/v1/models")
    assert client.read_reply().status == 200

    def rcvbuf() -> int:
        conn = relay.pool._idle[0]
        sock = conn.transport.get_extra_info("socket")
        value: int = sock.getsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF)
        return value

    assert lt.call(rcvbuf) == 2 * 32 * 1024  # Linux doubles the value it is given
