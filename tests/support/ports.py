"""Loopback ports for tests: a free one, and one whose listener never accepts."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a listener the test starts at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def unaccepting_port() -> Iterator[int]:
    """A port whose listener never accepts and whose accept queue is full, so the kernel drops
    new SYNs and a connect() to it hangs (until the caller's timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue (backlog 0 still admits one or two)
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        _, connected, _ = select.select([], fillers, [], 5)  # the queue holds its first one(s)
        assert connected
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()
