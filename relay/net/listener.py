"""The listening socket, and the registry of the client connections it accepted.

:func:`listen` starts a server whose every accepted socket gets a
:class:`~relay.net.client.ClientConnection`. :class:`Listener` can close them all at once, or
shut down gracefully: stop accepting, close idle connections, let the busy ones finish within a
grace period, then end what remains (an SSE stream gets a final error event).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..config import Limits, Timeouts
from ..http1.known_heads import KnownHeads
from .budget import BodyBudget
from .client import ClientConnection
from .exchange import Handler
from .sockets import tune_listener

if TYPE_CHECKING:
    from ..ops.trace import Tracer


class Connections:
    """The open client connections of a listener: a set that can be waited on until empty."""

    def __init__(self) -> None:
        self._open: set[ClientConnection] = set()
        self._emptied: asyncio.Event | None = None

    def add(self, conn: ClientConnection) -> None:
        self._open.add(conn)

    def discard(self, conn: ClientConnection) -> None:
        self._open.discard(conn)
        if not self._open and self._emptied is not None:
            self._emptied.set()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[ClientConnection]:
        return iter(list(self._open))  # a copy: closing a connection changes the set

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until no connection is open, for up to ``timeout`` seconds; True if none is."""
        if self._open:
            self._emptied = asyncio.Event()
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self._emptied = None
        return not self._open


class Listener:
    """A listening socket and the client connections it accepted (so all can be closed)."""

    def __init__(self, server: asyncio.Server, connections: Connections) -> None:
        self.server = server
        self.connections = connections
        self.port: int = server.sockets[0].getsockname()[1]  # (kept: closing drops sockets)

    def close(self) -> None:
        self.server.close()
        for conn in self.connections:
            conn.abort()

    async def shutdown(self, grace: float) -> bool:
        """Stop accepting, close idle connections, let busy ones finish for up to ``grace``
        seconds, then end what remains (SSE: a final error event). True if all finished."""
        self.server.close()  # the listening socket closes: new connections are refused
        for conn in self.connections:
            conn.close_when_idle()
        clean = await self.connections.wait_empty(grace)
        self.stop_now()
        return clean

    def stop_now(self) -> int:
        """The shutdown's last step (the grace passed, or a second signal came): what is
        still open ends as cleanly as its body allows. How many connections were open."""
        open_ = list(self.connections)
        for conn in open_:
            conn.stop_now()
        return len(open_)


async def listen(handler: Handler, host: str, port: int, limits: Limits, timeouts: Timeouts,
                 ssl_context: ssl.SSLContext | None = None,
                 connections: Connections | None = None, reuse_port: bool = False,
                 tracer: Tracer | None = None, budget: BodyBudget | None = None) -> Listener:
    """Start a server whose connections are ClientConnections calling ``handler`` per request
    (``connections``: the registry of open ones; ``budget``: the request-body memory all its
    connections share; each created here unless given)."""
    loop = asyncio.get_running_loop()
    registry = Connections() if connections is None else connections
    shared = budget or BodyBudget(limits.max_body_memory)
    known = KnownHeads(limits.known_heads)  # (one per listener: its limits judged them)

    def factory() -> asyncio.Protocol:
        conn = ClientConnection(handler, limits, timeouts, registry, loop, shared, known)
        return conn if tracer is None else tracer.wrap(conn, "c")

    server = await loop.create_server(
        factory, host, port, ssl=ssl_context, reuse_address=True, backlog=4096,
        reuse_port=reuse_port or None,
    )
    for sock in server.sockets:
        tune_listener(sock, limits.socket_buffer)  # accepted sockets inherit these (Linux)
    return Listener(server, registry)
