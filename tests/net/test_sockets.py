"""Socket options on both sides: no Nagle delay, the buffer sizes asked for."""

from __future__ import annotations

import socket

from relay.config import KIB, Limits
from relay.net.sockets import set_nodelay, tune_listener, tune_transport

from ..conftest import MockServer, RelayFactory
from ..support import (
    FakeTransport,
    H11Client,
    LoopThread,
    chat_body,
    connect,
    wait_until,
)


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


def test_socket_buffer_caps_the_relay_sockets(mock_server: MockServer, make_relay: RelayFactory,
                                              lt: LoopThread) -> None:
    relay = make_relay(mock_server.url, limits=Limits(socket_buffer=32 * KIB))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    client.read_reply()

    def sizes() -> list[tuple[int, int]]:
        socks = [c.transport.get_extra_info("socket") for c in relay.listener.connections]
        return [(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                 s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) for s in socks]

    def upstream_sndbuf() -> list[int]:
        return [c.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET,
                                                                 socket.SO_SNDBUF)
                for c in relay.pool._idle]

    assert lt.call(sizes) == [(64 * KIB, 64 * KIB)]  # Linux doubles the value set
    assert lt.call(upstream_sndbuf) == [64 * KIB]


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


def _accepted(listener: socket.socket) -> socket.socket:
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    client.close()
    return accepted


def test_the_listener_options_reach_accepted_sockets_by_inheritance() -> None:
    """uvloop and asyncio set TCP_NODELAY on their own transports anyway, so only plain
    sockets show that the helper works, and that Linux copies the listener's options to the
    sockets it accepts (which is why the relay sets them once, not per connection)."""
    with socket.create_server(("127.0.0.1", 0)) as plain, _accepted(plain) as accepted:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # Nagle on
    with socket.create_server(("127.0.0.1", 0)) as tuned:
        tune_listener(tuned, 32 * KIB)
        assert tuned.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with _accepted(tuned) as accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 64 * KIB
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 64 * KIB


def test_set_nodelay_leaves_non_tcp_sockets_alone() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        set_nodelay(unix)  # no error: Nagle is a TCP matter


def test_tune_transport_sets_the_water_marks() -> None:
    transport = FakeTransport()
    tune_transport(transport, 64 * KIB, 16 * KIB, nodelay=False)  # type: ignore[arg-type]
    assert transport.water == (64 * KIB, 16 * KIB)
