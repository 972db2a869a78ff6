"""A pure TCP byte pipe on uvloop (no HTTP at all): the floor for Python relaying.

    python -m bench.peers.pipe --port P --upstream-port M

Each client connection gets its own upstream connection; bytes are copied both ways as they
arrive, with pause/resume backpressure. Good enough for one request per connection (the
benchmark's streams), which is all it is for.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop


class Half(asyncio.Protocol):
    def __init__(self) -> None:
        self.peer: Half | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def main(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()

    class Client(Half):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.task = loop.create_task(self.connect())

        async def connect(self) -> None:
            _, up = await loop.create_connection(Half, "127.0.0.1", upstream_port)
            up.peer, self.peer = self, up
            for data in self.pending:
                assert up.transport is not None
                up.transport.write(data)
            self.pending.clear()

    server = await loop.create_server(Client, "127.0.0.1", port, backlog=4096)
    print(f"pipe listening on http://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    args = ap.parse_args()
    uvloop.run(main(args.port, args.upstream_port))
