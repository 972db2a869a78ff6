"""Write-side flow control: the small object that makes backpressure explicit.

A transport calls ``pause_writing()`` on its protocol when its write buffer goes over the
high-water mark and ``resume_writing()`` when it drains below the low-water mark. The relay
reacts in two ways:

* coroutines that produce data (the mock, local endpoints) ``await WriteFlow.wait_writable()``;
* the relay pump, which is callback-driven, pauses the *upstream* connection's reads
  (:meth:`relay.net.upstream.UpstreamConnection.pause_reads`), so the upstream's bytes wait in
  kernel buffers (and then in the upstream itself, through TCP flow control) instead of in our
  memory.
"""

from __future__ import annotations

import asyncio

from ..errors import ClientGone


class WriteFlow:
    """The write side of one transport: paused/resumed by the protocol, awaited by producers.

    ``wait_writable()`` returns at once when not paused; while paused it waits for ``resume()``.
    When the connection is lost, every waiter wakes with :class:`ClientGone` and later calls
    raise at once, so a producer can never hang on a dead socket.
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

    async def wait_writable(self) -> None:
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
