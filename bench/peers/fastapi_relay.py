"""The relay a user would write with FastAPI + sse-starlette + httpx, for comparison.

    python -m bench.peers.fastapi_relay --port P --upstream http://127.0.0.1:M

Streams are re-emitted as SSE events through sse-starlette (as such apps usually do), JSON
requests are forwarded whole.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from sse_starlette.sse import EventSourceResponse

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "content-length", "host", "content-encoding"}


def make_app(upstream: str) -> FastAPI:
    app = FastAPI()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
    client = httpx.AsyncClient(base_url=upstream, timeout=None, limits=limits)

    @app.api_route("/v1/{tail:path}", methods=["GET", "POST"])
    async def relay(tail: str, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        up_request = client.build_request(request.method, "/v1/" + tail, content=body,
                                          headers=headers, params=request.query_params)
        up = await client.send(up_request, stream=True)
        if not up.headers.get("content-type", "").startswith("text/event-stream"):
            data = await up.aread()
            await up.aclose()
            return Response(data, status_code=up.status_code,
                            media_type=up.headers.get("content-type"))

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                async for line in up.aiter_lines():
                    if line.startswith("data: "):
                        yield {"data": line[6:]}
            finally:
                await up.aclose()

        return EventSourceResponse(events())

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    print(f"fastapi relay listening on http://127.0.0.1:{args.port}", flush=True)
    uvicorn.run(make_app(args.upstream), host="127.0.0.1", port=args.port, log_level="warning",
                loop="uvloop", http="httptools", backlog=4096, access_log=False)


if __name__ == "__main__":
    main()
