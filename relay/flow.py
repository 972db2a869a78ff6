"""Flow control, the two small objects that make backpressure explicit.

A transport calls ``pause_writing()`` on its protocol when its write buffer goes over the
high-water mark and ``resume_writing()`` when it drains below the low-water mark. The relay
reacts in two ways:

* coroutines that produce data (the mock, local endpoints) ``await WriteFlow.drain()``;
* the relay pump, which is callback-driven, pauses the *upstream* transport's reads through a
  :class:`ReadGate`, so the upstream's bytes wait in kernel buffers (and then in the upstream
  itself, through TCP flow control) instead of in our memory.
"""

from __future__ import annotations

import asyncio

from .errors import ClientGone


class WriteFlow:
    """The write side of one transport: paused/resumed by the protocol, awaited by producers.

    ``drain()`` returns at once when not paused; while paused it waits for ``resume()``. When the
    connection is lost, every waiter wakes with :class:`ClientGone` and later calls raise at once,
    so a producer can never hang on a dead socket.
    """

    __slots__ = ("_lost", "_waiter", "paused")

    def __init__(self) -> None:
        self.paused = False
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake(None)

    def lost(self) -> None:
        self._lost = True
        self._wake(ClientGone("client connection lost"))

    async def drain(self) -> None:
        if self._lost:
            raise ClientGone("client connection lost")
        if not self.paused:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    def _wake(self, exc: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
            waiter.exception()  # mark retrieved: no "never retrieved" warning without waiters


_NO_REASONS: frozenset[str] = frozenset()


class ReadGate:
    """Pauses a transport's reads while at least one reason holds, resumes when none does.

    Several reasons may stop reads from one upstream at once (the client is slow, the relay is
    draining...); counting them by name keeps one reason's resume from undoing another's pause.
    """

    __slots__ = ("_reasons", "_transport")

    def __init__(self, transport: asyncio.ReadTransport) -> None:
        self._transport = transport
        self._reasons = _NO_REASONS  # shared while none: no set object per connection

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def pause(self, reason: str) -> None:
        if not self._reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reasons |= {reason}

    def clear(self) -> None:
        """Drop every reason and read again: a finished response must not leave its connection
        paused in the pool (it would never read the next response, nor notice a close)."""
        if self._reasons:
            self._reasons = _NO_REASONS
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def resume(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons -= {reason}
        if not self._reasons and not self._transport.is_closing():
            self._transport.resume_reading()
