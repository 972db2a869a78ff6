"""Routing: what goes upstream, what is answered here, and the admin listener."""

from __future__ import annotations

import json

from .conftest import MockServer, RelayFactory
from .support import (
    H11Client,
    chat_body,
    connect,
    free_port,
    scrape,
)


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
