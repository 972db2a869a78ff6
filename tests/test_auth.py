"""Client tokens: 401 before anything goes upstream; the client's token is never forwarded."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.auth import ClientAuth, parse_tokens
from relay.cli import config_from_args, parser

from .conftest import RelayFactory, ScriptedFactory
from .support import H11Client, Received, answering, connect


@pytest.fixture
def recording(scripted: ScriptedFactory) -> tuple[str, list[Received]]:
    received: list[Received] = []
    url = scripted(answering(received)).url
    return url, received


@pytest.mark.parametrize("api_key", [None, "sk-upstream-secret"])
def test_tokens_gate_v1_and_are_never_forwarded(recording: tuple[str, list[Received]],
                                                make_relay: RelayFactory,
                                                api_key: str | None) -> None:
    url, heads = recording
    relay = make_relay(url, client_tokens=("tok-one", "tok-two"), api_key=api_key)
    for auth in (None, b"Bearer wrong", b"Bearer tok-on", b"Basic tok-one", b"tok-one",
                 b"Bearer tok-one-and-more"):
        client = H11Client(connect(relay.port))
        client.send(b"POST", b"/v1/chat/completions", b"{}",
                    [] if auth is None else [(b"authorization", auth)])
        reply = client.read_reply()
        assert reply.status == 401, auth
        assert reply.headers[b"www-authenticate"].startswith(b"Bearer")
        assert b"invalid_api_key" in reply.body
    assert heads == []  # nothing went upstream
    for token in (b"tok-one", b"tok-two"):
        client = H11Client(connect(relay.port))
        client.send(b"POST", b"/v1/chat/completions", b"{}",
                    [(b"authorization", b"Bearer " + token)])
        assert client.read_reply().status == 200
    assert len(heads) == 2
    for head in (r.head for r in heads):
        assert b"tok-" not in head
        if api_key:
            assert b"authorization: Bearer sk-upstream-secret\r\n" in head
        else:
            assert b"authorization" not in head.lower()
    # local endpoints stay open (liveness probes carry no token)
    client = H11Client(connect(relay.port))
    client.send(b"GET", b"/healthz")
    assert client.read_reply().status == 200


def test_without_tokens_the_clients_authorization_goes_upstream(
        recording: tuple[str, list[Received]], make_relay: RelayFactory) -> None:
    url, heads = recording
    relay = make_relay(url)
    client = H11Client(connect(relay.port))
    client.send(b"POST", b"/v1/x", b"{}", [(b"authorization", b"Bearer sk-client")])
    assert client.read_reply().status == 200
    assert b"authorization: Bearer sk-client\r\n" in heads[0].head


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_tokens("a, b,,c") == ("a", "b", "c")
    assert parse_tokens("") == ()
    file = tmp_path / "tokens"
    file.write_text("# relay tokens\none\n\n two  # trailing comment\n")
    assert parse_tokens(f"@{file}") == ("one", "two")
    monkeypatch.setenv("RELAY_CLIENT_TOKENS", "tok-x,tok-y")
    config = config_from_args(parser().parse_args(["serve"]))
    assert config.client_tokens == ("tok-x", "tok-y")
    assert "tok-" not in repr(config)
    auth = ClientAuth(config.client_tokens)
    assert auth.allows(b"Bearer tok-y") and auth.allows(b"bearer tok-x")
    assert not auth.allows(b"Bearer tok-z")
    assert ClientAuth(()).allows(None)
