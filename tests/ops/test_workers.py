"""``--workers 2``: two processes serve one port; a killed worker is replaced; SIGTERM stops all."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from ..support import H11Client, connect, wait_until
from ..support.processes import spawn


def _children(pid: int) -> set[int]:
    kids = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids |= {int(k) for k in text}
    return kids


def _serving_pid(port: int) -> int:
    client = H11Client(connect(port))  # a new connection each time: the kernel picks a worker
    client.send(b"GET", b"/healthz")
    pid: int = json.loads(client.read_reply().body)["pid"]
    client.sock.close()
    return pid


def test_two_workers_share_the_port_and_are_supervised() -> None:
    with spawn("serve", "--port", "0", "--workers", "2", "--access-log", "off") as (
            parent, port, _):
        assert wait_until(lambda: len(_children(parent.pid)) == 2, 10)
        workers = _children(parent.pid)
        seen: set[int] = set()
        assert wait_until(lambda: seen.add(_serving_pid(port)) or seen == workers, 10)

        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        # replaced: two live workers again, a new pid among them, and it serves requests
        assert wait_until(lambda: len(_children(parent.pid) - {victim}) == 2, 10)
        replacement = (_children(parent.pid) - workers).pop()
        seen.clear()
        assert wait_until(lambda: seen.add(_serving_pid(port)) or replacement in seen, 10)
        assert victim not in seen

        live = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(15) == 0
        for pid in live:  # the parent waited for each worker: all gone
            assert not Path(f"/proc/{pid}").exists()
