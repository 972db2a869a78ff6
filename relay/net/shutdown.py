"""A client connection's steps in a graceful shutdown, as
:meth:`relay.net.listener.Listener.shutdown` takes them: stop taking requests and close what is
idle, let responses in flight finish within the grace period, then end what is left as cleanly
as its body allows.

A mixin of :class:`relay.net.client.ClientConnection`, kept apart because it is the one part of
the connection that the listener, not the socket, drives.
"""

from __future__ import annotations

import asyncio

from .exchange import ENDED, RECEIVED, Exchange


class ShutdownSteps:
    """The listener's side of a client connection (see the module docstring)."""

    transport: asyncio.Transport
    _exchange: Exchange | None
    _closing: bool  # close after the response in flight instead of reading another request
    _closed: bool

    def abort(self) -> None:
        """Close this connection now; an in-flight exchange sees its client go."""
        if not self._closed:
            self.transport.abort()

    def close_when_idle(self) -> None:
        """Graceful shutdown, step one: a connection with no response in flight closes now (a
        request still being read included); a busy one finishes its response, then closes
        instead of reading another request."""
        self._closing = True
        ex = self._exchange
        if ex is None and not self._closed:
            self.transport.close()
        elif ex is not None and ex.listener is not None:
            ex.listener.on_draining()

    def stop_now(self) -> None:
        """Graceful shutdown, last step (the grace period passed): the in-flight response ends
        as cleanly as its body allows (an SSE error event and a clean end), then the close."""
        ex = self._exchange
        if ex is not None and ex.listener is not None and (ex.state is RECEIVED or ex.open):
            ex.listener.on_shutdown()
        if self._closed:
            return
        if ex is None or ex.state is ENDED:
            self.transport.close()
        else:
            self.transport.abort()  # a body that cannot carry an error: cut, never a clean end
