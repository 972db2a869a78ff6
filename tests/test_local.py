"""The relay's own endpoints, /healthz and /metrics, never upstream."""

from __future__ import annotations

import json

from .conftest import RelayFactory
from .support import (
    H11Client,
    chat_body,
    connect,
)


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
