"""A real nginx, configured with docs/nginx.conf, in front of the relay: streaming stays live."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

from ..conftest import RelayFactory, ScriptedFactory
from ..support import (
    SSE_HEAD,
    H11Client,
    UpstreamConn,
    chat_body,
    chunked,
    connect,
    free_port,
    recv_until,
    require_tool,
    wait_until,
)

SITE = Path(__file__).resolve().parents[2] / "docs" / "nginx.conf"


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
    nginx = require_tool("nginx")
    site = SITE.read_text().replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{relay};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert f"127.0.0.1:{relay}" in site and f"127.0.0.1:{port}" in site
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n fastcgi_temp_path {tmp_path}/fcgi;\n"
        f" uwsgi_temp_path {tmp_path}/uwsgi;\n scgi_temp_path {tmp_path}/scgi;\n{site}\n}}\n")
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
