"""Exchange alone, on the fake transport: its states, its writers, its listener."""

from __future__ import annotations

import asyncio

import pytest

from relay.errors import ClientGone
from relay.http1.messages import Request
from relay.net.exchange import Exchange, ExchangeState
from relay.net.flow import WriteFlow

from ..support import FakeTransport


class Owner:
    def __init__(self) -> None:
        self.ended: list[Exchange] = []

    def exchange_ended(self, ex: Exchange) -> None:
        self.ended.append(ex)


class Listener:
    def __init__(self) -> None:
        self.heard: list[str] = []

    def on_client_paused(self) -> None:
        self.heard.append("paused")

    def on_client_resumed(self) -> None:
        self.heard.append("resumed")

    def on_client_gone(self) -> None:
        self.heard.append("gone")

    def on_shutdown(self) -> None:
        self.heard.append("shutdown")


def _exchange(method: bytes = b"GET", version: bytes = b"1.1", keep_alive: bool = True
              ) -> tuple[Exchange, FakeTransport, Owner]:
    transport, owner = FakeTransport(), Owner()
    request = Request(method, b"/v1/x", [(b"host", b"x")], version, keep_alive=keep_alive)
    return Exchange(owner, request, transport, WriteFlow()), transport, owner  # type: ignore[arg-type]


def test_a_chunked_response_from_start_to_end() -> None:
    ex, transport, owner = _exchange()
    assert ex.state is ExchangeState.RECEIVED and not ex.started
    ex.start(200, [(b"content-type", b"text/event-stream")])
    assert ex.state is ExchangeState.SENDING and ex.started and ex.open
    assert ex.chunked and ex.appendable
    assert transport.take() == (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n")
    ex.write(b"data: 1\n\n")
    ex.write(b"")  # nothing: an empty chunk would end the body
    ex.write_pieces([b"a", b"bc"])
    ex.write_framed([b"3\r\nxyz\r\n"])
    ex.write_framed([b"1\r\n1\r\n", b"1\r\n2\r\n"])
    assert transport.take() == (b"9\r\ndata: 1\n\n\r\n1\r\na\r\n2\r\nbc\r\n3\r\nxyz\r\n"
                                b"1\r\n1\r\n1\r\n2\r\n")
    ex.end()
    assert transport.take() == b"0\r\n\r\n"
    assert ex.state is ExchangeState.ENDED and owner.ended == [ex]
    ex.end()  # a second end changes nothing
    assert owner.ended == [ex] and transport.take() == b""


def test_writes_before_the_head_are_a_bug() -> None:
    ex, _, _ = _exchange()
    for call in (lambda: ex.write(b"x"), lambda: ex.write_pieces([b"x"]), ex.end):
        with pytest.raises(RuntimeError):
            call()
    ex.start(204, [])
    with pytest.raises(RuntimeError, match="already started"):
        ex.start(200, [])


def test_a_length_response_and_a_close_delimited_one() -> None:
    ex, transport, owner = _exchange()
    ex.respond(200, b'{"ok":1}')
    assert transport.take().endswith(b"content-length: 8\r\n\r\n{\"ok\":1}")
    assert owner.ended == [ex] and not ex.appendable
    old, transport, owner = _exchange(version=b"1.0", keep_alive=False)
    old.start(200, [])
    old.write(b"raw")
    old.end()
    assert transport.take() == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nraw"
    assert old.appendable and not old.chunked


def test_no_body_for_head_whatever_is_written() -> None:
    ex, transport, _ = _exchange(method=b"HEAD")
    ex.start(200, [], length=12)
    ex.write(b"not sent")
    ex.end()
    assert transport.take() == b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"


def test_the_client_leaving_drops_writes_and_tells_the_listener() -> None:
    ex, transport, owner = _exchange()
    listener = Listener()
    ex.listen(listener)
    ex.start(200, [])
    transport.take()
    assert ex.client_gone()
    assert ex.state is ExchangeState.GONE and listener.heard == ["gone"]
    assert ex.listener is None  # the cycle is broken at once
    ex.write(b"dropped")
    ex.write_pieces([b"dropped"])
    ex.write_framed([b"1\r\nx\r\n"])
    ex.end()
    assert transport.take() == b"" and owner.ended == [] and not transport.closed
    assert not ex.client_gone()  # only once


def test_gone_before_the_head_sends_nothing() -> None:
    ex, transport, _ = _exchange()
    ex.client_gone()
    ex.respond(200, b"{}")
    assert transport.take() == b"" and ex.state is ExchangeState.GONE


def test_abort_cuts_the_connection_and_is_final() -> None:
    ex, transport, owner = _exchange()
    ex.listen(Listener())
    ex.start(200, [], length=100)
    ex.write(b"partial")
    ex.abort()
    assert transport.aborted and ex.state is ExchangeState.ABORTED and ex.listener is None
    assert not ex.client_gone() and owner.ended == []


def test_peer_and_wait_writable() -> None:
    ex, _, _ = _exchange()
    assert ex.peer() == "127.0.0.1:40000"

    async def main() -> None:
        await ex.wait_writable()  # not paused: at once
        ex.client_gone()
        with pytest.raises(ClientGone):
            await ex.wait_writable()

    asyncio.run(main())
