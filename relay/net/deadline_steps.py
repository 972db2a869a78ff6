"""What a client connection does when one of its deadlines passes: the keep-alive idle time, the
head or body deadline (slowloris: 408), the send timeout (a client that takes nothing is cut).

A mixin of :class:`relay.net.client.ClientConnection`; its
:class:`~relay.net.deadlines.Timer` objects call these, and the client module says when each is
armed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..config import Timeouts
from ..http1.messages import Request
from ..http1.request_head import HeadReader, Rejection
from .exchange import Exchange

log = logging.getLogger("relay.client")


class DeadlineSteps:
    """The timers' side of a client connection (see the module docstring)."""

    transport: asyncio.Transport
    _timeouts: Timeouts
    _exchange: Exchange | None
    _head: HeadReader | None  # (awaiting a head)
    _head_started: bool
    _request: Request | None  # (a request whose body is being read)
    _closed: bool
    _reject: Callable[[Rejection], bool]  # (answer a refusal and close)

    def _idle_timeout(self) -> None:
        """No byte of a next request within the keep-alive timeout: close quietly."""
        if self._exchange is None and not self._head_started:
            self.transport.close()

    def _request_timeout(self) -> None:
        """Slowloris: the head did not arrive whole in time, or the body fell silent."""
        if not self._closed and (self._head is not None or self._request is not None):
            part = "head" if self._head is not None else "body"
            self._reject(Rejection(408, f"request {part} not received in time"))

    def _send_timeout(self) -> None:
        """The client took nothing for ``Timeouts.send`` seconds: cut it. Its exchange sees the
        client go, so a relayed stream closes its upstream; memory held for it is freed."""
        if not self._closed:
            log.info("client made no progress reading for %g s; connection cut",
                     self._timeouts.send)
            self.transport.abort()
