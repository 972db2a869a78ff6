"""--trace: the raw bytes of both sides, per connection; nothing is wrapped without it."""

from __future__ import annotations

import re

from relay.ops.trace import TracingTransport, redact

from ..conftest import MockServer, RelayFactory, ScriptedFactory
from ..support import (
    H11Client,
    LoopThread,
    UpstreamConn,
    chat_body,
    connect,
    sse_data,
    wait_until,
)
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


def test_credentials_never_reach_the_trace(scripted: ScriptedFactory) -> None:
    """The injected key, a client's token, cookies: on both sides the header names show, the
    values do not (their length does)."""

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(b"HTTP/1.1 200 OK\r\nset-cookie: session=upstream-secret\r\ncontent-length: 2"
                b"\r\n\r\n{}")
        await c.watch_close()

    up = scripted(script)
    with spawn("serve", "--port", "0", "--trace", "--access-log", "off", "--upstream", up.url,
               "--client-token", "tok-client-secret",
               env={"OPENAI_API_KEY": "sk-upstream-secret"}) as (_p, port, lines):
        client = H11Client(connect(port))
        client.send(b"POST", b"/v1/x", b"{}", [
            (b"authorization", b"Bearer tok-client-secret"), (b"cookie", b"c=client-secret"),
            (b"x-api-key", b"xk-client-secret"), (b"Proxy-Authorization", b"Basic cHJveHk=")])
        assert client.read_reply().status == 200
        assert wait_until(lambda: any("upstream>relay  {}" in line for line in lines))
        assert wait_until(lambda: any("relay>client    {}" in line for line in lines))
    text = "\n".join(lines)
    for secret in ("secret", "cHJveHk"):
        assert secret not in text
    assert "relay>upstream  authorization: [redacted, 25 bytes]" in text
    assert "client>relay    authorization: [redacted, 24 bytes]" in text
    assert "upstream>relay  set-cookie: [redacted, 23 bytes]" in text
    assert "cookie: [redacted" in text and "x-api-key: [redacted" in text
    assert "Proxy-Authorization: [redacted" in text


def test_redact_keeps_everything_but_the_value() -> None:
    assert redact(b"Authorization: Bearer x\r\n") == b"Authorization: [redacted, 8 bytes]\r\n"
    assert redact(b"x-request-id: abc\r\n") == b"x-request-id: abc\r\n"
    assert redact(b"data: authorization: in a body\n\n") == b"data: authorization: in a body\n\n"
