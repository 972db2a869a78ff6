"""The per-request record: the facts of one request, filled in along it and read at its end.

A :class:`Record` is made when a request's head is read (its method, path, client, id and the
time), filled in by whichever endpoint answers it (statuses, time to first byte, byte and event
counts, a resumable stream's id) and finished exactly once by
:meth:`relay.ops.observer.Observer.finish`, which adds it to the metrics and writes its
access-log line (:class:`relay.ops.access_log.AccessLog` reads it). It is its own module so the
access log and the observer both read it without importing each other.
"""

from __future__ import annotations

import random
import re
import time

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_random = random.Random()  # seeded from the OS once, at import


def request_id(given: bytes | None) -> bytes:
    """The client's ``X-Request-ID`` when it is a sane token, else a new random one."""
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # 96 random bits from the process's PRNG: unique enough to trace a request, with no
    # getrandom() system call per request (secrets.token_hex cost one; ids need not be secret).
    return b"%024x" % _random.getrandbits(96)


_LOCAL_ROUTES = frozenset({"/", "/healthz", "/metrics", "/demo.js", "/favicon.svg"})


def route_of(path: bytes) -> str:
    """The metrics label for a path: a few routes, never the path itself (a client could make
    one label per request)."""
    if path.startswith(b"/v1/"):
        return "/v1"
    if path.startswith(b"/events/"):
        return "/events"
    text = path.decode("latin-1")
    return text if text in _LOCAL_ROUTES else "other"


class Record:
    """One request's facts, for its metrics and its access-log line. The request's method,
    path and id are kept as bytes and decoded only when read (the access log): a relay with
    the log off never decodes them, and answers carry ``rid`` as it is."""

    __slots__ = ("_method", "_path", "bytes_in", "bytes_out", "client", "ended", "events",
                 "reason", "replayed", "rid", "route", "started", "status", "stream_id", "ttfb",
                 "upstream_status", "wall_started")

    def __init__(self, method: bytes, path: bytes, client: str, request_id: bytes,
                 bytes_in: int, now: float) -> None:
        self._method, self._path = method, path
        # (route_of's two usual answers inline: one call less for every request)
        self.route = ("/v1" if path.startswith(b"/v1/") else "/events"
                      if path.startswith(b"/events/") else route_of(path))
        self.client = client
        self.rid = request_id
        self.bytes_in = bytes_in
        self.bytes_out = self.events = self.status = 0
        self.started = now
        self.wall_started = time.time()
        self.upstream_status: int | None
        self.ttfb: float | None  # request received -> response head written
        self.ended: str | None
        self.stream_id: str | None  # a resumable stream this request started or read
        self.replayed: int | None  # events a resume replayed
        self.reason: str | None  # why a request refused before routing was refused
        self.upstream_status = self.ttfb = self.ended = self.stream_id = self.replayed = (
            self.reason) = None

    @property
    def method(self) -> str:
        return self._method.decode("latin-1")

    @property
    def path(self) -> str:
        return self._path.decode("latin-1")

    @property
    def request_id(self) -> str:
        return self.rid.decode("latin-1")
