"""What a client connection does when one of its deadlines passes: the keep-alive idle time, the
head or body deadline (slowloris: 408), the send timeout (a client that takes nothing is cut);
and how a body's deadline is armed: the silence between reads, or the body's total time
(``--request-body-deadline``, from its first read) when that comes first, so a body trickled a
byte at a time, never silent for long, still ends; and the keep-alive one, after any answer.

A mixin of :class:`relay.net.client.ClientConnection`; its
:class:`~relay.net.deadlines.Timer` objects call these, and the client module says when each is
armed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from ..config import Timeouts
from ..http1.messages import Request
from ..http1.request_body import RequestBody
from ..http1.request_head import HeadReader, Rejection
from .deadlines import Timer
from .exchange import Exchange
from .flow import WriteFlow

log = logging.getLogger("relay.client")


class DeadlineSteps:
    """The timers' side of a client connection (see the module docstring)."""

    transport: asyncio.Transport
    _timeouts: Timeouts
    _exchange: Exchange | None
    _head: HeadReader | None  # (awaiting a head)
    _head_started: bool
    _request: Request | None  # (a request whose body is being read)
    _body: RequestBody | None
    _loop: asyncio.AbstractEventLoop
    _timer: Timer
    _closed: bool
    _wait_drain: bool  # the next request waits until the client takes our answers
    flow: WriteFlow
    _reject: Callable[[Rejection], bool]  # (answer a refusal and close)
    _pause_reading: Callable[[], None]

    def _idle_timeout(self) -> None:
        """No byte of a next request within the keep-alive timeout: close quietly."""
        if self._exchange is None and not self._head_started:
            self.transport.close()

    def _await_next_head(self) -> bool:
        """After any answer: the keep-alive deadline runs, the head's from its first byte;
        False while our answers are not read (no request is taken until they are)."""
        self._head_started = False
        self._timer.arm(self._timeouts.keepalive, self._idle_timeout)
        if self.flow.paused:
            self._pause_reading()
            self._wait_drain = True
            return False
        return True

    def _body_timer(self) -> None:
        """A read inside a body, more to come: the timer is armed to the silence deadline from
        now or the body's total one, whichever comes first (the total one set at its first
        read; 0: none)."""
        body, now = self._body, self._loop.time()
        assert body is not None
        if not body.deadline:
            body.deadline = now + (self._timeouts.request_body_deadline or math.inf)
        self._timer.arm(min(self._timeouts.request_body, body.deadline - now),
                        self._request_timeout)

    def _request_timeout(self) -> None:
        """Slowloris: the head did not arrive whole in time, or the body fell silent or was
        not whole within its total deadline."""
        if self._closed or (self._head is None and self._request is None):
            return
        body = self._body
        if (self._head is None and body is not None and body.deadline
                and self._loop.time() >= body.deadline):
            self._reject(Rejection(408, "request body not received whole within "
                                   f"{self._timeouts.request_body_deadline:g} s"))
        else:
            part = "head" if self._head is not None else "body"
            self._reject(Rejection(408, f"request {part} not received in time"))

    def _send_timeout(self) -> None:
        """The client took nothing for ``Timeouts.send`` seconds: cut it. Its exchange sees the
        client go, so a relayed stream closes its upstream; memory held for it is freed."""
        if not self._closed:
            log.info("client made no progress reading for %g s; connection cut",
                     self._timeouts.send)
            self.transport.abort()
