"""Routing: what goes upstream, what is answered here, and the admin listener."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from relay.channels.broker import MemoryBroker
from relay.channels.endpoints import ChannelEndpoints
from relay.config import Limits, Timeouts
from relay.cors import Cors
from relay.guard import Guard
from relay.router import Routing, Way, route

from .conftest import MockServer, RelayFactory, ScriptedFactory
from .support import (
    H11Client,
    LoopThread,
    Received,
    answering,
    chat_body,
    connect,
    free_port,
    read_until_close,
    recv_until,
    scrape,
    wait_until,
)

_APP = {b"origin": b"https://app.example"}
_ROUTES: list[tuple[bytes, bytes, dict[bytes, bytes], Way, int | None, bool]] = [
    # (method, path, headers, way, the refusal's status, CORS headers)
    (b"GET", b"/healthz", {}, Way.LOCAL, None, False),
    (b"GET", b"/nowhere", {}, Way.LOCAL, None, False),  # (a 404: LocalEndpoints knows its pages)
    (b"POST", b"/v1/chat/completions", {}, Way.PROXY, None, False),
    (b"GET", b"/v1/streams/abc", {}, Way.STREAMS, None, False),
    (b"POST", b"/events/news", _APP, Way.CHANNELS, None, True),
    (b"OPTIONS", b"/v1/x", {**_APP, b"access-control-request-method": b"POST"},
     Way.PREFLIGHT, None, True),
    (b"OPTIONS", b"/v1/x", _APP, Way.PROXY, None, True),  # (not a preflight)
    (b"POST", b"/events/news", {b"origin": b"https://evil.example"}, Way.REFUSED, 403, False),
    (b"POST", b"/events/news", {b"sec-fetch-site": b"cross-site"}, Way.REFUSED, 403, False),
    (b"GET", b"/healthz", {b"host": b"evil.example"}, Way.REFUSED, 421, False),
]


@pytest.mark.parametrize(("method", "path", "headers", "way", "refused", "cors"), _ROUTES)
def test_one_pure_function_routes_a_head(method: bytes, path: bytes,
                                         headers: dict[bytes, bytes], way: Way,
                                         refused: int | None, cors: bool) -> None:
    """route(): the endpoint, the refusal and the CORS headers, from the head and the
    settings alone; channels and streams only when served."""
    routing = Routing(Guard("127.0.0.1", cors=Cors(["https://app.example"])), True, True)
    fields = {b"host": b"127.0.0.1", **headers}
    taken = route(method, path, fields.get, routing)
    assert taken.way is way and route(method, path, fields.get, routing) == taken
    assert (taken.refusal.status if taken.refusal else None) == refused
    assert bool(taken.cors) is cors
    if way in (Way.CHANNELS, Way.STREAMS):  # not served: a local page (a 404), or upstream
        assert route(method, path, fields.get, Routing(routing.guard, False, False)).way is (
            Way.LOCAL if way is Way.CHANNELS else Way.PROXY)


def test_unknown_path_is_404_json_and_never_upstream(mock_server: MockServer,
                                                     make_relay: RelayFactory) -> None:
    relay = make_relay(mock_server.url)
    client = H11Client(connect(relay.port))
    for target in (b"/index.html", b"/v2/models", b"/v1"):  # (absolute-form: test_request_head)
        client.send(b"GET", target)
        reply = client.read_reply()
        assert reply.status == 404, target
        assert json.loads(reply.body)["error"]["code"] == "unknown_url"
        client.next_cycle()
    assert mock_server.mock.requests == 0


def test_admin_port_serves_metrics_and_the_public_port_does_not(mock_server: MockServer,
                                                                make_relay: RelayFactory) -> None:
    admin = free_port()
    relay = make_relay(mock_server.url, admin_port=admin)
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/metrics")
    assert client.read_reply().status == 404
    m = scrape(admin)
    assert m['relay_requests_total{route="/metrics",status="404"}'] == 1
    client = H11Client(connect(admin))
    client.send(b"GET", b"/healthz")
    assert json.loads(client.read_reply().body)["status"] == "ok"
    client.next_cycle()
    client.send(b"POST", b"/v1/chat/completions", chat_body(2))
    assert client.read_reply().status == 404  # never relayed from the admin port
    assert mock_server.mock.requests == 0


@pytest.mark.parametrize(("target", "status"), [
    (b"/v1/../admin", 404), (b"/v1/%2e%2e/admin", 404), (b"/v1/%2E%2e/admin?x=1", 404),
    (b"/v1/./../admin", 404), (b"/v1//../admin", 404), (b"/v1/chat/../../admin", 404),
    (b"/v1/%2e%2e%2fadmin", 400), (b"/v1/..%5cadmin", 400), (b"/v1\\..\\admin", 400),
    (b"/v1/%252e%252e/admin", 400),
])
def test_no_path_escapes_v1(target: bytes, status: int, scripted: ScriptedFactory,
                            make_relay: RelayFactory) -> None:
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url, api_key="sk-relay-secret")
    client = H11Client(connect(relay.port))
    client.send(b"GET", target)
    reply = client.read_reply()
    assert reply.status == status, reply.body
    assert received == []  # nothing went upstream, with the key or without


def test_what_goes_upstream_is_the_normalized_path(scripted: ScriptedFactory,
                                                   make_relay: RelayFactory) -> None:
    received: list[Received] = []
    relay = make_relay(scripted(answering(received)).url)
    for target in (b"/v1/./models?limit=2", b"/v1//models?limit=2", b"/v1/x/../models?limit=2",
                   b"/v1/%2e/models?limit=2"):
        client = H11Client(connect(relay.port))
        client.send(b"GET", target)
        assert client.read_reply().status == 200
    assert [r.request_line for r in received] == [b"GET /v1/models?limit=2 HTTP/1.1"] * 4


def test_a_bug_behind_an_endpoint_still_ends_its_record(make_relay: RelayFactory,
                                                        lt: LoopThread, tmp_path: Path) -> None:
    """An exception no endpoint expected: the client gets a 500, and the request still has its
    one access-log line and leaves no gauge up."""
    log = tmp_path / "access.log"
    relay = make_relay(access_log=str(log))

    async def broken() -> None:
        raise RuntimeError("a bug")

    lt.call(lambda: setattr(relay.pool, "acquire", broken))
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/chat/completions", b"{}")
    assert client.read_reply().status == 500
    assert wait_until(lambda: log.exists() and log.read_text().count("\n") == 1)
    line = json.loads(log.read_text())
    assert (line["status"], line["ended"]) == (500, "internal_error")
    assert scrape(relay.port)["relay_active_streams"] == 0


def _publish_request(channel: bytes, body: bytes, *headers: bytes) -> bytes:
    return (b"POST /events/" + channel + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n" + b"".join(
        h + b"\r\n" for h in headers) + b"content-length: %d\r\n\r\n" % len(body) + body)


_ORIGIN = b"origin: http://app.example"
_TOKEN = b"authorization: Bearer pub-1"
_GOOD = _publish_request(b"news", b'{"data": "hi"}', _TOKEN, _ORIGIN)
_HOLD, _RELEASE = b"hold", b"release"  # (steps: another connection holds body memory, or not)
_BUDGET = 50  # --max-body-memory of the relays compared: the held 40 bytes and a publish do not fit
_HELD = b'{"data": "held for a while, then published"}'  # (its first 40 bytes held)


def _twice(request: bytes) -> tuple[bytes, ...]:
    """A good request of a head, then ``request`` (refused) twice: the second time its head
    is known, so a fast path that refused it differently would show."""
    return (_GOOD, request, request, _GOOD)


_DIRECT_CASES: list[tuple[bytes, ...]] = [  # each on one connection, then each on a new one
    (_publish_request(b"news", b'{"data": "hi"}', _TOKEN),) * 3,
    (_publish_request(b"news", b'{"data": {"a": 1}, "event": "story"}', _TOKEN, _ORIGIN),) * 3,
    (_publish_request(b"news", b'{"data": "x"}', _TOKEN, b"x-request-id: req-7"),) * 3,
    (_publish_request(b"other", b'{"data": "x"}', b"authorization: Bearer wrong"),) * 3,
    (_publish_request(b"news", b'{"data": ', _TOKEN),) * 3,
    (_publish_request(b"news", b'{"nodata": 1}', _TOKEN),) * 3,
    (_publish_request(b"bad!name", b'{"data": "x"}', _TOKEN),) * 3,
    (_publish_request(b"boom", b'{"data": "x"}', _TOKEN, _ORIGIN),) * 3,  # (the broker raises)
    (b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",) * 3,
    (_publish_request(b"news", b'{"data": "last"}', _TOKEN, b"connection: close"),),
    # refusals, each after a good request of the same head (but for what refuses it):
    _twice(_GOOD.replace(_ORIGIN, b"origin: http://bad.example")),  # a foreign Origin: 403
    _twice(_GOOD.replace(_ORIGIN, b"origin: null")),
    _twice(_GOOD.replace(_ORIGIN, b"sec-fetch-site: cross-site")),  # no Origin, cross-site
    _twice(_GOOD.replace(b"host: 127.0.0.1", b"host: evil.example")),  # a foreign Host: 421
    _twice(_GOOD.replace(_TOKEN + b"\r\n", b"")),  # no token: 401
    _twice(_GOOD.replace(b"pub-1", b"pub-2")),  # a wrong token: 401
    # the same head exactly, its body refused:
    (_GOOD, _HOLD, _GOOD, _GOOD, _RELEASE, _GOOD),  # over --max-body-memory: 503 (and close)
    (_GOOD, _GOOD.replace(b'"hi"}', b'"hi"!'), _GOOD),  # not JSON: 400
    (_GOOD, _GOOD.replace(b'{"data": "hi"}', b'{"nodata": 12}'), _GOOD),  # no data: 400
    (_GOOD, _GOOD.replace(b'{"data": "hi"}', b'["data", "hi"]'), _GOOD),  # not an object
]


def _normalized(reply: bytes) -> bytes:
    """An answer with what differs between two runs (ids, times) blanked."""
    reply = re.sub(rb"x-request-id: [0-9a-f]{24}\r\n", b"x-request-id: R\r\n", reply)
    reply = re.sub(rb'"id": "\d+-\d+"', b'"id": "I"', reply)
    return re.sub(rb'"(uptime_s|pid|tasks)": \d+', rb'"\1": 0', reply)


def read_reply_bytes(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length body, as its bytes."""
    got = recv_until(sock, lambda got: b"\r\n\r\n" in got)
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head)[1])  # type: ignore[index]
    return head + b"\r\n\r\n" + recv_until(sock, lambda got: len(got) >= length, body)


class _Holder:
    """Another client whose publish is half received: its bytes held in --max-body-memory
    until the rest comes (``release``), answered then."""

    def __init__(self, port: int) -> None:
        self._sock = connect(port)
        request = _publish_request(b"held", _HELD, _TOKEN, b"expect: 100-continue")
        self._rest = request[-4:]
        self._sock.sendall(request[:-4])  # (one read: the relay reserves what it got, then
        recv_until(self._sock, lambda got: b"100 Continue\r\n\r\n" in got)  # says so)

    def release(self) -> bytes:
        with self._sock:
            self._sock.sendall(self._rest)
            return read_reply_bytes(self._sock)


def _run_cases(port: int, one_connection: bool) -> list[bytes]:
    replies, holder = [], None
    for case in _DIRECT_CASES:
        sock = None
        for step in case:
            if step == _HOLD:
                holder = _Holder(port)
                continue
            if step == _RELEASE:
                assert holder is not None
                replies.append(_normalized(holder.release()))
                continue
            if sock is None:
                sock = connect(port)
            sock.sendall(step)
            replies.append(_normalized(read_reply_bytes(sock)))
            if not one_connection or b"connection: close" in replies[-1].lower():
                sock.close()  # (a refusal closes its own)
                sock = None
        if sock is not None:
            sock.close()
    return replies


_COUNTED = ("relay_requests", "relay_request_bytes", "relay_request_body", "relay_response_bytes",
            "relay_channel", "relay_events", "relay_active", "relay_client_disconnects")
_VARYING = ("time", "client", "ttfb_ms", "duration_ms", "request_id")  # (by run)


def _observed(make_relay: RelayFactory, log: Path, known_heads: int, one_connection: bool
              ) -> tuple[Any, ...]:
    """The cases' answers, access-log lines and counters from a new relay."""
    relay = make_relay(limits=Limits(known_heads=known_heads, max_body_memory=_BUDGET),
                       access_log=str(log), cors_origins=("http://app.example",),
                       publish_tokens=("pub-1",))
    replies = _run_cases(relay.port, one_connection)
    assert wait_until(lambda: log.read_text().count("\n") == len(replies))
    lines = [{k: v for k, v in json.loads(line).items() if k not in _VARYING}
             for line in log.read_text().splitlines()]
    metrics = {k: v for k, v in scrape(relay.port).items()
               if k.startswith(_COUNTED) or k.startswith("relay_client_ttfb_seconds_count")}
    return replies, lines, metrics


@pytest.mark.parametrize("one_connection", [True, False], ids=["one", "new"])
def test_a_publish_answered_directly_is_the_usual_answer(
        make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        one_connection: bool) -> None:
    """A known head's publish skips the exchange and the routing (Router.direct): the bytes
    out, the access-log lines and the counters are those of the usual way (a relay that knows
    no head), for accepted publishes and for refused ones (answered the usual way): a foreign
    Origin or Host, no token or a wrong one, no room in --max-body-memory, a bad body, each
    right after a good request of the same head, on one connection and on new ones."""
    direct = []
    usual_publish = ChannelEndpoints.publish_direct

    def counted(self: ChannelEndpoints, channel: str, body: bytes) -> bytes | None:
        answer = usual_publish(self, channel, body)
        direct.append(answer is not None)
        return answer

    monkeypatch.setattr(ChannelEndpoints, "publish_direct", counted)
    usual_broker = MemoryBroker.publish_now

    def broken(self: MemoryBroker, channel: str, data: str, event: str | None) -> Any:
        if channel == "boom":
            raise RuntimeError("a bug behind the publish")
        return usual_broker(self, channel, data, event)

    monkeypatch.setattr(MemoryBroker, "publish_now", broken)
    runs = [_observed(make_relay, tmp_path / f"access-{n}.log", n, one_connection)
            for n in (4096, 0)]
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert runs[0] == runs[1]
    replies = runs[0][0]
    statuses = [int(r.split(b" ", 2)[1]) for r in replies]
    assert statuses == [200] * 9 + [401] * 3 + [400] * 9 + [500] * 3 + [200] * 4 + (
        [200, 403, 403, 200] * 3 + [200, 421, 421, 200] + [200, 401, 401, 200] * 2
        + [200, 503, 503, 200, 200] + [200, 400, 200] * 3)
    assert b"access-control-allow-origin: http://app.example" in replies[4]
    assert b"x-request-id: req-7\r\n" in replies[8]
    assert direct.count(True) > 10  # (the good requests of known heads: answered directly)
    counters = runs[0][2]
    assert counters['relay_requests_ended_total{ended="refused"}'] == 2  # (the 503s)
    assert counters["relay_channel_publishes_total"] == statuses.count(200) - 3  # (not /healthz)
    assert counters["relay_request_body_bytes_held"] == 0


def test_a_known_publish_head_still_waits_for_room_in_the_body_budget(
        make_relay: RelayFactory) -> None:
    """--max-body-memory holds for direct answers too: a publish whose body does not fit gets
    the usual 503, the first time and every time after (its head known by then)."""
    relay = make_relay(limits=Limits(max_body_memory=10))
    request = _publish_request(b"news", b'{"data": "more than ten bytes"}')
    for _ in range(3):
        with connect(relay.port) as sock:
            sock.sendall(request)
            reply = read_reply_bytes(sock)
            assert reply.startswith(b"HTTP/1.1 503 ") and b"--max-body-memory" in reply
    assert scrape(relay.port).get("relay_channel_publishes_total", 0) == 0


_REFUSALS: list[tuple[bytes, int, str, str, str]] = [
    # (bytes sent, status, method, path, reason's start): refused before any routing
    (b"POST /v1/chat/completions?key=qs-secret HTTP/1.1\r\nhost: localhost\r\n"
     b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", "",
     "both Content-Length and Transfer-Encoding"),  # smuggling: judged on the raw head
    (b"POST /events/x HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
     b"zz\r\n", 400, "POST", "/events/x", "invalid chunked request body"),
    (b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nauthorization : Bearer sk-h11-secret\r\n\r\n",
     400, "", "", "malformed request (h11)"),  # h11's words quote the line: not logged
    (b"POST /v1/x?access_token=qs-secret HTTP/1.1\r\nhost: localhost\r\ncontent-length: 9\r\n"
     b"\r\n{", 408, "POST", "/v1/x", "request body not received in time"),
    (b"POST /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5000\r\n\r\n", 413, "", "",
     "request body too large"),
    (b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: " + b"b" * 3000 + b"\r\n\r\n", 431,
     "", "", "request head too large"),
    (b"POST /events/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1200\r\n\r\n"
     + b"y" * 1100, 503, "POST", "/events/x", "the relay holds as many request bodies"),
]


def test_every_request_refused_before_routing_gets_one_access_log_line(
        make_relay: RelayFactory, tmp_path: Path) -> None:
    """400 (smuggling, framing, h11), 408, 413, 431 and the body budget's 503: each refusal
    answered by the client connection itself has exactly one line, with its status, a reason,
    ended "refused" and the method and path once its head was parsed; never a query string
    or a quoted header line (a credential)."""
    log = tmp_path / "access.log"
    relay = make_relay(access_log=str(log), timeouts=Timeouts(request_body=0.3),
                       limits=Limits(max_head_size=2048, max_body_size=1500,
                                     max_body_memory=1000))  # (1,100 bytes received: a 503)
    for n, (sent, status, method, path, reason) in enumerate(_REFUSALS, 1):
        with connect(relay.port) as sock:
            sock.sendall(sent)
            assert read_until_close(sock).startswith(b"HTTP/1.1 %d " % status)
        assert wait_until(lambda n=n: log.read_text().count("\n") == n), (status, reason)
        line = json.loads(log.read_text().splitlines()[-1])
        assert (line["status"], line["method"], line["path"], line["ended"]) == (
            status, method, path, "refused")
        assert line["reason"].startswith(reason) and line["request_id"]
    text = log.read_text()
    assert "secret" not in text and "reason" not in json.loads(_healthz_line(relay, log))
    assert scrape(relay.port)['relay_requests_ended_total{ended="refused"}'] == len(_REFUSALS)


def _healthz_line(relay: Any, log: Path) -> str:
    """The line of a request served as usual (it has no reason)."""
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/healthz")
    assert client.read_reply().status == 200
    assert wait_until(lambda: log.read_text().count("\n") == len(_REFUSALS) + 1)
    return log.read_text().splitlines()[-1]
