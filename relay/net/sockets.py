"""Socket options, for both sides of the relay: no Nagle delay, buffer sizes, water marks."""

from __future__ import annotations

import asyncio
import socket
from typing import cast


def set_nodelay(sock: socket.socket) -> None:
    """No Nagle delay on small events. Set on a listening socket, Linux copies it to every
    accepted socket, so accepted connections need no system call of their own for it."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tune_listener(sock: socket.socket, socket_buffer: int) -> None:
    """Options set once on a listening socket, which Linux copies to every accepted socket (no
    system call per connection). SO_SNDBUF/SO_RCVBUF cap what the kernel holds per client (it
    doubles the value for its bookkeeping), so a slow client's bound is real, not just RSS."""
    set_nodelay(sock)
    if socket_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, socket_buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, socket_buffer)


def tune_transport(
    transport: asyncio.BaseTransport, high: int, low: int, rcvbuf: int = 0, nodelay: bool = True,
    sndbuf: int = 0,
) -> None:
    """TCP_NODELAY (unless the listener already gave it) and explicit buffer water marks.

    asyncio and uvloop usually set TCP_NODELAY already; setting it here makes it a guarantee.
    Accepted connections skip this: fetching the socket object costs a getsockname and the
    option a setsockopt per connection, and they inherit it from the listener anyway.
    uvloop's default low-water mark is tiny, so resume_writing would fire for every few bytes
    drained; explicit marks make pause/resume (and so upstream read pauses) coarse and cheap.
    """
    sock = transport.get_extra_info("socket") if nodelay or rcvbuf or sndbuf else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        if nodelay:
            set_nodelay(sock)
        if rcvbuf:  # caps one read, hence what a paused stream can hold (see Limits)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    cast(asyncio.WriteTransport, transport).set_write_buffer_limits(high=high, low=low)
    # A TLS transport keeps reading ciphertext while our reads are paused, up to its own
    # incoming-buffer limit (asyncio's default: 256 KiB); hold it to the same marks.
    set_read_limits = getattr(transport, "set_read_buffer_limits", None)
    if set_read_limits is not None:
        set_read_limits(high=high, low=low)
