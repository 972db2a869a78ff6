"""A TCP forwarder whose connections a test can cut: the network path between a client (a
browser, an SDK) and the relay, "restarted" at a moment the test chooses."""

from __future__ import annotations

import asyncio
import contextlib


class Cutter:
    """Listens on a free loopback port and forwards each connection to ``target``;
    :meth:`cut` resets every connection open now (new ones are forwarded as before)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> Cutter:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        """Reset both sides of every open connection (an abort: no clean end)."""
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        self.cuts += 1

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._open -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()
