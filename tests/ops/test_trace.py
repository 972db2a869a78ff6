"""--trace: the raw bytes of both sides, per connection; nothing is wrapped without it."""

from __future__ import annotations

import asyncio
import io
import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.ops.trace import Tracer, TracingTransport, redact

from ..conftest import MockServer, RelayFactory, ScriptedFactory
from ..support import (
    H11Client,
    LoopThread,
    Received,
    UpstreamConn,
    answering,
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
    assert redact(b"GET /x?a=1&token=t&b=2 HTTP/1.1\r\n") == (
        b"GET /x?a=1&token=[redacted, 1 bytes]&b=2 HTTP/1.1\r\n")


def test_a_query_is_split_as_the_relay_reads_it_and_as_an_upstream_may() -> None:
    """The relay takes parameters with parse_qs, which splits at "&" only: "#" and ";" are
    part of a name or value, so ?a#=1&access_token=T is a token the relay accepts, and
    QQ#QQ is one value, hidden whole. A query to an upstream goes as it came, and some split
    at ";" too: a parameter after one is read as a parameter."""
    for target, secret in ((b"/v1/streams/rs_x?a#=1&access_token=QQQQ", b"QQQQ"),
                           (b"/v1/streams/rs_x?access_token=QQ#QQ", b"QQ#QQ"),
                           (b"/v1/streams/rs_x?access_token=QQ;QQ", b"QQ;QQ"),
                           (b"/v1/models?x=1;api_key=QQQQQQ", b"QQQQQQ")):
        line = redact(b"GET " + target + b" HTTP/1.1\r\n")
        assert b"Q" not in line, line
        assert b"[redacted, %d bytes]" % len(secret) in line


# A request and an answer whose every credential is made of "Q" (nowhere else in them): in a
# header value (with a continuation line), in the relay's access_token, in a percent-encoded
# parameter name, with a ";" inside (a character of the value, as parse_qs reads it), and a
# set-cookie on the way back.
_SECRETS = (b"Bearer QQQQ-QQQQ", b"QQQQQQQQQQQQQ", b"c=QQQ; d=QQ", b"QQ-folded QQ", b"QQQ",
            b"QQQQQ", b"QQQ;QQQQ", b"QQQ=QQ")
_TRAFFIC = (b"GET /events/news?last_event_id=7&access_token=%s&x=1 HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nAuthorization: %s\r\nx-request-id: kept\r\n"
            b"Cookie: %s\r\n\t%s\r\n\r\n"
            b"POST /v1/x?access%%5Ftoken=%s&api_key=%s HTTP/1.1\r\nProxy-Authorization:%s\r\n"
            b"content-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nSet-Cookie:  %s\r\n\r\n") % (
    _SECRETS[1], _SECRETS[0], _SECRETS[2], _SECRETS[3], _SECRETS[4], _SECRETS[5], _SECRETS[6],
    _SECRETS[7])
_MARK = re.compile(r"\[redacted, (\d+) bytes\]")


class _Sink(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


def _traced(cuts: list[int]) -> str:
    """What --trace prints of _TRAFFIC read in pieces cut at ``cuts``."""
    out = io.StringIO()
    protocol = Tracer(out).wrap(_Sink(), "c")
    bounds = [0, *sorted(set(cuts)), len(_TRAFFIC)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            protocol.data_received(_TRAFFIC[start:end])
    return out.getvalue()


def _check_trace(cuts: list[int]) -> None:
    text = _traced(cuts)
    assert "Q" not in text, (cuts, text)
    # Exactly the credentials' bytes are hidden: however it was cut, the counts add up.
    assert sum(int(n) for n in _MARK.findall(text)) == sum(len(s) for s in _SECRETS), text


def test_a_credential_cut_anywhere_between_two_reads_is_never_printed() -> None:
    """Cut once at every offset: inside a header name, its value, the CRLF, a parameter's name
    or value."""
    for cut in range(1, len(_TRAFFIC)):
        _check_trace([cut])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, len(_TRAFFIC) - 1), max_size=12))
def test_a_credential_cut_into_any_reads_is_never_printed(cuts: list[int]) -> None:
    _check_trace(cuts)


def test_a_token_split_over_two_reads_of_a_real_connection_stays_hidden(
        scripted: ScriptedFactory) -> None:
    """The finding: `Authorization: Bearer AAAA` in one read and `BBBB` in the next showed
    BBBB in clear. The second half is sent only once the trace has shown the first read."""
    received: list[Received] = []
    up = scripted(answering(received))
    with spawn("serve", "--port", "0", "--trace", "--access-log", "off", "--upstream",
               up.url) as (_p, port, lines), connect(port) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"authorization: Bearer AAAA")
        assert wait_until(lambda: any("client>relay    authorization: [redacted" in line
                                      for line in lines))
        sock.sendall(b"BBBB\r\n\r\n")
        assert wait_until(lambda: len(received) == 1)
    text = "\n".join(lines)
    assert "AAAA" not in text and "BBBB" not in text
    assert "client>relay    [redacted, 4 bytes]\\r\\n" in text


def test_query_credentials_never_reach_the_trace(scripted: ScriptedFactory) -> None:
    """The finding: a relay token given as ?access_token= was printed in clear (a channel's
    EventSource gives it so); a /v1/* query goes upstream as it came, so its key is hidden on
    that side too."""
    received: list[Received] = []
    up = scripted(answering(received))
    with spawn("serve", "--port", "0", "--trace", "--access-log", "off", "--upstream", up.url,
               "--client-token", "tok-QQQQ") as (_p, port, lines):
        events = H11Client(connect(port))
        events.send(b"GET", b"/events/news?access_token=tok-QQQQ&last_event_id=x")
        assert wait_until(lambda: any("relay>client    HTTP/1.1 200" in line for line in lines))
        client = H11Client(connect(port))
        client.send(b"GET", b"/v1/models?api_key=sk-QQQQ&limit=2",
                    headers=[(b"authorization", b"Bearer tok-QQQQ")])
        assert client.read_reply().status == 200
        assert received[0].request_line == b"GET /v1/models?api_key=sk-QQQQ&limit=2 HTTP/1.1"
    text = "\n".join(lines)
    assert "QQQQ" not in text
    assert "GET /events/news?access_token=[redacted, 8 bytes]&last_event_id=x HTTP" in text
    assert "relay>upstream  GET /v1/models?api_key=[redacted, 7 bytes]&limit=2 HTTP" in text
