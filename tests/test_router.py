"""Routing: what goes upstream, what is answered here, and the admin listener."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import MockServer, RelayFactory, ScriptedFactory
from .support import (
    H11Client,
    LoopThread,
    Received,
    answering,
    chat_body,
    connect,
    free_port,
    scrape,
    wait_until,
)


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
