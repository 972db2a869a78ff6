"""The relay a user would write with aiohttp (server + ClientSession), for comparison.

    python -m bench.peers.aiohttp_relay --port P --upstream http://127.0.0.1:M
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "content-length", "host", "content-encoding"}


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def start(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        app["session"] = aiohttp.ClientSession(upstream, connector=connector, auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with request.app["session"].request(
            request.method, request.path_qs, data=body, headers=headers
        ) as up:
            out = web.StreamResponse(status=up.status, headers={
                k: v for k, v in up.headers.items() if k.lower() not in HOP})
            await out.prepare(request)
            async for piece in up.content.iter_any():
                await out.write(piece)
            await out.write_eof()
            return out

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/v1/{tail:.*}", relay)
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    uvloop.install()
    print(f"aiohttp relay listening on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None,
                access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
