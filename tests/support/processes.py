"""Run ``relay serve`` / ``relay mock`` as real subprocesses (for RSS, CLI and signal tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_LISTENING = re.compile(r"listening on https?://[^:]+:(\d+)")


@contextmanager
def spawn(*args: str, env: dict[str, str] | None = None,
          timeout: float = 15) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """Start ``python -m relay ARGS``; yield (process, port from its banner, output lines).

    After the banner, a thread keeps reading the output into the same list (the access log goes
    to stderr: an unread pipe would fill and block the process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    port = None
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
        if port is None:
            raise RuntimeError("process did not start:\n" + "\n".join(lines))
        stdout = proc.stdout

        def drain() -> None:
            for line in stdout:
                lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        yield proc, port, lines
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if port is not None:
            reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
