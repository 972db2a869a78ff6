"""--trace: the raw bytes of both sides, per connection; nothing is wrapped without it."""

from __future__ import annotations

import re

from relay.ops.trace import TracingTransport

from ..conftest import MockServer, RelayFactory
from ..support import H11Client, LoopThread, chat_body, connect, sse_data, wait_until
from ..support.processes import spawn


def test_trace_shows_both_sides_of_a_stream() -> None:
    with spawn("serve", "--port", "0", "--trace", "--access-log", "off") as (_p, port, lines):
        client = H11Client(connect(port))
        client.send(b"POST", b"/v1/chat/completions", chat_body(2))
        assert sse_data(client.read_reply().body)[-1] == b"[DONE]"
        assert wait_until(lambda: sum("relay>client" in line for line in lines) > 10)
        assert wait_until(lambda: any("relay>client    0\\r\\n" in line for line in lines))
    text = "\n".join(lines)
    stamp = r"\d\d:\d\d:\d\d\.\d{3}"
    assert re.search(stamp + r" c1  client>relay    POST /v1/chat/completions HTTP/1.1\\r\\n",
                     text)
    assert re.search(stamp + r" u1  relay>upstream  POST /v1/chat/completions HTTP/1.1\\r\\n",
                     text)
    assert re.search(stamp + r" u1  upstream>relay  HTTP/1.1 200 OK\\r\\n", text)
    assert re.search(stamp + r" u1  upstream>relay  [0-9a-f]+\\r\\n", text)  # chunk sizes
    for side in ("upstream>relay", "relay>client"):
        assert re.search(stamp + rf" ..  {side} +data: \[DONE\]\\n\\n\\r\\n", text)
    assert "--- c1 connected" in text and "--- u1 connected" in text


def test_no_tracing_wrapper_without_trace(mock_server: MockServer, make_relay: RelayFactory,
                                          lt: LoopThread) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    client.read_reply()
    transports = lt.call(lambda: [c.transport for c in relay.listener.connections]
                         + [c.transport for c in relay.pool._idle])
    assert len(transports) == 2
    assert not any(isinstance(t, TracingTransport) for t in transports)
