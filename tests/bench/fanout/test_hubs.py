"""bench/fanout/hubs.py: each hub's requests, command line and probe (no hub is started)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from bench.fanout import hubs
from bench.fanout.hubs import Hub, HubMissing, count_redis_clients, hub_argv, nchan_conf, probe
from bench.fanout.wire import event_data
from bench.procs import Proc


def test_redis_client_count_leaves_out_redis_cli() -> None:
    text = ("id=3 addr=127.0.0.1:1 fd=8 name= flags=P cmd=subscribe\n"
            "id=4 addr=127.0.0.1:2 fd=9 name= flags=N cmd=publish\n"
            "id=5 addr=127.0.0.1:3 fd=11 name= flags=N cmd=client|list\n")
    assert count_redis_clients(text) == 2


def _hub(name: str) -> Hub:
    return Hub(name, proc=None, port=8080, cpus={0}, load_cpus={1})  # type: ignore[arg-type]


def test_requests_carry_a_loopback_host_and_each_hubs_paths() -> None:
    relay, nchan = _hub("relay"), _hub("nchan")
    assert relay.sub_request("f1").startswith(b"GET /events/f1 HTTP/1.1\r\nHost: 127.0.0.1:8080")
    assert b"Accept: text/event-stream" in nchan.sub_request("f1")  # nchan: 403 without it
    assert nchan.sub_request("f1").startswith(b"GET /sub/f1 ")
    data = event_data(30, 1.5e9)
    post = relay.pub_request("c7", data)
    head, body = post.split(b"\r\n\r\n")
    assert head.startswith(b"POST /events/c7 ") and b"application/json" in head
    assert body == b'{"data": "' + data + b'"}' and b"Content-Length: %d" % len(body) in head
    assert nchan.pub_request("c7", data).endswith(b"\r\n\r\n" + data)


def test_the_nchan_config_template_is_complete(tmp_path: Path) -> None:
    text = nchan_conf(4321, tmp_path).read_text()
    assert "{" + "PORT}" not in text and "listen 127.0.0.1:4321" in text
    assert "ngx_nchan_module.so" in text and "worker_processes 1;" in text


@pytest.mark.parametrize("name", ["relay", "nchan", "starlette"])
def test_every_hub_name_starts_a_known_command(name: str, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    seen: list[list[str]] = []

    class FakeProc:
        def __init__(self, argv: list[str], cpus: set[int], log: Path) -> None:
            seen.append(argv)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(hubs, "Proc", FakeProc)
    monkeypatch.setattr(hubs, "wait_ready", lambda *a: None)
    monkeypatch.setattr(hubs, "probe", lambda hub: None)
    hub = hubs.start_hub(name, ({0}, {1}), tmp_path)
    assert hub.cpus == {0} and hub.load_cpus == {1}
    main = seen[-1]
    if name == "relay":
        assert main[1:4] == ["-m", "relay", "serve"] and "--redis" not in main
    elif name == "nchan":
        assert main[0] == "nginx" and hub.redis is None
    else:
        assert "bench.peers.starlette_channels" in main and seen[0][0] == "redis-server"
    assert isinstance(hub, Hub) and not isinstance(hub.proc, Proc)


def test_a_relay_without_channel_endpoints_is_missing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        hub = _hub("relay")
        hub.port = server.getsockname()[1]
        with pytest.raises(HubMissing, match="404"):
            probe(hub)
        thread.join(5)


def test_the_relay_gets_redis_only_as_relay_redis(tmp_path: Path) -> None:
    assert "--redis" not in hub_argv("relay", 1, tmp_path, None)
    argv = hub_argv("relay-redis", 1, tmp_path, "redis://127.0.0.1:2/0")
    assert argv[argv.index("--redis") + 1] == "redis://127.0.0.1:2/0"
