from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.app import Relay, start_relay
from relay.config import Config, Limits, Origin, Timeouts
from relay.mock import MockUpstream
from relay.net.listener import Listener, listen

from .support import OPEN_SOCKETS, FakeLoop, LoopThread, Script, ScriptedUpstream
from .support.redis_server import RedisServer
from .support.tls import TLSFiles, make_tls


@pytest.fixture(autouse=True)
def _close_client_sockets() -> Iterator[None]:
    yield
    while OPEN_SOCKETS:
        OPEN_SOCKETS.pop().close()


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@dataclasses.dataclass
class MockServer:
    mock: MockUpstream
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def mock_server(lt: LoopThread) -> Iterator[MockServer]:
    mock = MockUpstream()
    listener: Listener = lt.run(listen(mock, "127.0.0.1", 0, Limits(), Timeouts()))
    yield MockServer(mock, listener.port)
    lt.call(listener.close)


RelayFactory = Callable[..., Relay]


@pytest.fixture
def make_relay(lt: LoopThread) -> Iterator[RelayFactory]:
    """Start a relay in the loop thread: ``make_relay(upstream_url, timeouts=..., ...)``."""
    relays: list[Relay] = []

    def make(upstream: str | None = None, **overrides: Any) -> Relay:
        config = Config(host="127.0.0.1", port=0,
                        upstream=Origin.parse(upstream) if upstream else None, **overrides)
        relay = lt.run(start_relay(config))
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        lt.run(relay.close())


ScriptedFactory = Callable[[Script], ScriptedUpstream]


@pytest.fixture
def scripted(lt: LoopThread) -> Iterator[ScriptedFactory]:
    ups: list[ScriptedUpstream] = []

    def make(script: Script) -> ScriptedUpstream:
        up = lt.run(ScriptedUpstream(script).start())
        ups.append(up)
        return up

    yield make
    for up in ups:
        lt.call(up.close)


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    """A private CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""
    return make_tls(tmp_path)


@pytest.fixture
def fake_loop() -> FakeLoop:
    return FakeLoop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port (skips without one, fails under RELAY_REQUIRE_ALL)."""
    server = RedisServer().start()
    yield server
    server.stop()
