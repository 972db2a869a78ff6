"""What a client connection does with a request its handler answers directly, in bytes.

A mixin of :class:`relay.net.client.ClientConnection`. When a head it knows (parsed before,
byte for byte) comes whole with its whole body in one read and nothing after, and the
connection is idle (no answer in flight, none unread, no shutdown) and its body fits in what
``--max-body-memory`` has left (held for the call, as any body is), the handler's ``direct``
(:class:`~relay.net.exchange.DirectAnswers`) may answer it at once: its bytes are written and
the connection awaits its next head, as after any answer, with no request, body or exchange
object made for it. Anything else, or a ``direct`` that returns None, goes the usual way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..http1.known_heads import ParsedHead
from .budget import Hold
from .exchange import Exchange, peer_of
from .flow import WriteFlow

log = logging.getLogger("relay.client")


class DirectSteps:
    """The direct answer's side of a client connection (see the module docstring)."""

    transport: asyncio.Transport
    flow: WriteFlow
    _direct: Callable[[ParsedHead, bytes, Callable[[], str]], bytes | None] | None
    _exchange: Exchange | None
    _hold: Hold
    _overloaded: bool
    _closing: bool
    _await_next_head: Callable[[], bool]

    def _answer_directly(self, head: ParsedHead, data: bytes, at: int) -> bool:
        """A known head with its whole body in this read and nothing after: offered to the
        handler's ``direct`` answer (:class:`~relay.net.exchange.DirectAnswers`). True when it
        answered; the connection then awaits its next head, as after any answer."""
        if (self._direct is None or len(data) - at != head.length or not head.keep_alive
                or head.expect_continue or self._overloaded or self._closing or self.flow.paused
                or self._exchange is not None):
            return False
        if not self._hold.take(head.length):  # (no room in --max-body-memory: the usual 503)
            return False
        try:
            response = self._direct(head, data[at:], self._peer)
        except Exception:  # (a bug in the direct answer itself: the usual way answers)
            log.exception("direct answer failed")
            response = None
        finally:
            self._hold.release()
        if response is None:
            return False
        self.transport.write(response)
        self._await_next_head()
        return True

    def _peer(self) -> str:
        return peer_of(self.transport)
