"""Endpoints the relay answers itself, never upstream: ``/healthz``, ``/metrics``, and the demo
page (``/`` and its script)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence

from . import __version__
from .cors import Cors
from .net.exchange import Exchange
from .net.pool import Pool
from .net.respond import respond, respond_error
from .ops.metrics import CONTENT_TYPE as METRICS_TYPE
from .ops.observer import Observer
from .ops.record import Record
from .web import HEADERS as PAGE_HEADERS
from .web import PAGES

_RETRY = ((b"retry-after", b"1"),)


class LocalEndpoints:
    """``/healthz`` (version, uptime, and the live counts a soak checks; a 503 error instead
    while a dependency is broken, Redis with ``--redis``: a load balancer then stops sending)
    and ``/metrics`` (Prometheus text)."""

    def __init__(self, pool: Pool, observer: Observer) -> None:
        self.pool, self.obs, self.started = pool, observer, time.time()

    def serve(self, ex: Exchange, record: Record, metrics: bool) -> bool:
        """Answer ``ex`` if it asks for a local endpoint; False if it does not."""
        path = ex.request.path
        if path == b"/healthz" and (broken := self.broken()):
            message, code = broken
            self.error(ex, record, 503, message, code, _RETRY)
        elif path == b"/healthz":
            pool = self.pool
            doc = {"status": "ok", "version": __version__, "pid": os.getpid(),
                   "uptime_s": round(time.time() - self.started),
                   "client_connections": len(self.obs.connections), "upstream_open": pool.open,
                   "upstream_idle": pool.idle_count, "tasks": len(asyncio.all_tasks())}
            self.respond(ex, record, 200, json.dumps(doc).encode(), b"application/json")
        elif path == b"/metrics" and metrics:
            self.respond(ex, record, 200, self.obs.registry.render(), METRICS_TYPE)
        elif path in PAGES and ex.request.method in (b"GET", b"HEAD"):
            body, content_type = PAGES[path]
            self.respond(ex, record, 200, body, content_type, PAGE_HEADERS)
        else:
            return False
        return True

    def broken(self) -> tuple[str, str] | None:
        """The first dependency that cannot serve now (message, code), from the state the
        relay already keeps (no round trip per probe); None when all can."""
        for check in self.obs.health:
            broken = check()
            if broken is not None:
                return broken
        return None

    def respond(self, ex: Exchange, record: Record, status: int, body: bytes,
                content_type: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        respond(self.obs, ex, record, status, body, content_type, extra)

    def error(self, ex: Exchange, record: Record, status: int, message: str, code: str,
              extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        respond_error(self.obs, ex, record, status, message, code, extra)

    def preflight(self, ex: Exchange, record: Record, cors: Cors) -> None:
        """A CORS preflight from an allowed origin: 204, answered here, never forwarded."""
        req = ex.request
        origin = req.header(b"origin") or b""
        ex.extra = cors.preflight_headers(
            origin, req.header(b"access-control-request-headers"))
        record.status = 204
        record.ttfb = self.obs.clock() - record.started
        ex.start(204, [(b"x-request-id", record.rid)])
        ex.end()
        self.obs.finish(record, "complete")
