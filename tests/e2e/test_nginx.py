"""A real nginx, configured with docs/nginx.conf, in front of the relay (streaming stays live),
and with docs/nginx-instances.conf in front of two relays sharing channels through Redis."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    SSE_HEAD,
    EventStream,
    H11Client,
    UpstreamConn,
    chat_body,
    chunked,
    connect,
    free_port,
    publish,
    recv_until,
    require_tool,
    wait_until,
)
from ..support.processes import spawn
from ..support.redis_server import RedisServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
SITE = DOCS / "nginx.conf"


def test_first_event_arrives_through_nginx_before_the_upstream_finishes(
        scripted: ScriptedFactory, make_relay: RelayFactory, tmp_path: Path) -> None:
    nginx_port = free_port()
    first_seen = threading.Event()

    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(SSE_HEAD + chunked(b'data: {"n": 1}\n\n'))
        # The rest only once the client, behind nginx and the relay, has the first event.
        await asyncio.get_running_loop().run_in_executor(None, first_seen.wait, 10)
        c.write(chunked(b'data: {"n": 2}\n\n') + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    up = scripted(script)
    relay = make_relay(up.url)
    nginx = _start_nginx(tmp_path, nginx_port, relay.port)
    try:
        assert wait_until(lambda: _accepts(nginx_port), 10)
        sock = connect(nginx_port, timeout=10)
        H11Client(sock).send(b"POST", b"/v1/chat/completions", chat_body())
        received = recv_until(sock, lambda got: b'data: {"n": 1}' in got)
        assert b'{"n": 2}' not in received  # the upstream has not sent it yet
        assert b"\r\nx-request-id: " in received  # the relay answered (nginx eats X-Accel-*)
        first_seen.set()
        received = recv_until(sock, lambda got: b"[DONE]" in got, received)
        assert received.startswith(b"HTTP/1.1 200 ")
    finally:
        nginx.terminate()
        nginx.wait(10)


def _accepts(port: int) -> bool:
    try:
        connect(port, timeout=1).close()
        return True
    except OSError:
        return False


def _start_nginx(tmp_path: Path, port: int, relay: int) -> subprocess.Popen[bytes]:
    site = SITE.read_text().replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{relay};")
    return _nginx_with(tmp_path, site, port)


def _nginx_with(tmp_path: Path, site: str, port: int) -> subprocess.Popen[bytes]:
    nginx = require_tool("nginx")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert f"127.0.0.1:{port}" in site
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n fastcgi_temp_path {tmp_path}/fcgi;\n"
        f" uwsgi_temp_path {tmp_path}/uwsgi;\n scgi_temp_path {tmp_path}/scgi;\n{site}\n}}\n")
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_two_relays_behind_nginx_share_channels_and_a_subscriber_survives_one(
        redis_server: RedisServer, tmp_path: Path) -> None:
    """Subscribers reach the relays through nginx; a publish through nginx reaches all of them
    whichever relay holds them; a relay is stopped: its subscribers reconnect through nginx to
    the other one with their Last-Event-ID, and miss nothing."""
    nginx_port = free_port()
    args = ("--redis", redis_server.url, "--access-log", "off", "--allowed-host", "relay.test")
    with spawn("serve", "--port", "0", *args) as (first, port_1, _), \
            spawn("serve", "--port", "0", *args) as (_second, port_2, _):
        site = (DOCS / "nginx-instances.conf").read_text()
        site = site.replace("server 127.0.0.1:8081", f"server 127.0.0.1:{port_1}")
        site = site.replace("server 127.0.0.1:8082", f"server 127.0.0.1:{port_2}")
        nginx = _nginx_with(tmp_path, site, nginx_port)
        try:
            assert wait_until(lambda: _accepts(nginx_port), 10)
            host = [(b"host", b"relay.test")]
            streams = [EventStream(nginx_port, b"/events/feed", host) for _ in range(4)]
            assert wait_until(lambda: len(redis_server.client().pubsub_channels(
                "relay:ch:*")) == 1)
            publish(nginx_port, "feed", "one", headers=host)
            for stream in streams:
                stream.read(1)
            first.terminate()  # a drain: its subscriptions end cleanly
            first.wait(10)
            publish(nginx_port, "feed", "two", headers=host)
            moved = 0
            for stream in streams:
                stream.read(2)  # two events, or the clean end of a stopped relay's stream
                if stream.ended:  # what an EventSource does: come back with Last-Event-ID
                    moved += 1
                    again = EventStream(nginx_port, b"/events/feed",
                                        [*host, (b"last-event-id", stream.events[-1].id.encode())])
                    again.read(1)
                    stream.events += again.events
                assert [e.data for e in stream.events] == ["one", "two"]
            assert moved >= 1  # (nginx spread the subscribers over both relays)
        finally:
            nginx.terminate()
            nginx.wait(10)
