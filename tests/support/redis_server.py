"""A real redis-server for tests, on a free loopback port, without persistence, stopped by PID."""

from __future__ import annotations

import signal
import subprocess
import time

import redis

from relay.redis_link import CLOSE_WAIT

from .loop import require_tool
from .ports import free_port

# A Redis-backed part's close waits for each of its parts at most CLOSE_WAIT (a store's: its
# quiet wait, its tasks, then its link's three parts); past this, close() hung. Tests wait for
# a close with this bound, so a hang fails as one, not as the test's whole timeout.
CLOSE_BOUND = 6 * CLOSE_WAIT + 1.0


class RedisServer:
    def __init__(self) -> None:
        self.binary = require_tool("redis-server")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP by PID: the port still accepts (the kernel's backlog), nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def relay_connections(self) -> dict[str, int]:
        """Connections per relay process, from CLIENT LIST (the relay names its two)."""
        counts: dict[str, int] = {}
        for entry in self.client().client_list():
            name = entry.get("name", "")
            if name.startswith("relay:"):
                pid = name.split(":")[1]
                counts[pid] = counts.get(pid, 0) + 1
        return counts
