"""CORS: the web origins allowed to use the relay from a browser, and the headers that say so.

A page on another origin may call the relay only if the relay says so (``--cors-origin``):

* a **preflight** (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``), which a
  browser sends before any request that is not "simple" (a JSON POST, an ``Authorization``
  header), is answered by the relay itself, 204, never forwarded: the allowed origin echoed,
  ``Vary: Origin``, the allowed methods, the requested headers that are allowed, and
  ``Access-Control-Max-Age`` so the browser asks again only every ten minutes;
* a **real response** to an allowed origin carries ``Access-Control-Allow-Origin``,
  ``Vary: Origin`` and ``Access-Control-Expose-Headers`` for the relay's own headers (request
  and stream ids), so the page can read them.

An exact origin in the list is echoed with ``Access-Control-Allow-Credentials: true`` (a page may
send cookies or HTTP auth); ``*`` allows any origin, but then never with credentials, as the
Fetch standard requires. Origins not allowed, and ``Origin`` values no browser would send
(:func:`parse_origin`), are refused before anything else by :mod:`relay.guard` (403).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from .http1.messages import Headers

DEFAULT_PORTS = {"http": 80, "https": 443}

METHODS = b"GET, POST, OPTIONS"
MAX_AGE = b"600"
# What pages send: the token and key, JSON, a resume id, a request id, the relay's opt-in for
# resumable streams, and the openai SDK's own headers (organization, project, beta flags, and
# the x-stainless-* family it adds to every request).
ALLOWED_HEADERS = frozenset({
    b"authorization", b"content-type", b"last-event-id", b"x-request-id", b"x-relay-resumable",
    b"openai-organization", b"openai-project", b"openai-beta", b"accept", b"cache-control",
})
ALLOWED_PREFIXES = (b"x-stainless-",)
EXPOSED = b"x-request-id, x-upstream-request-id, x-relay-stream-id, retry-after"


# An origin as browsers serialize it: scheme "://" host [":" port], the host a name or IPv4
# address, or an IPv6 one in brackets. Userinfo is matched only to be refused: a parser that
# skips it (urllib's hostname) reads "https://evil.example@app.example" (or
# "...\\@app.example") as app.example.
_ORIGIN = re.compile(r"(https?)://(?:([^/?#]*)@)?([a-z0-9_.-]+|\[[0-9a-f:.]+\])"
                     r"(?::([0-9]{1,5}))?", re.ASCII | re.IGNORECASE)


def parse_origin(value: str) -> str:
    """The origin an ``Origin`` header names, as browsers serialize it (``scheme://host[:port]``,
    lower case, no default port, an IPv6 address compressed), or "" (refused). Only what a URL
    parser would turn into that form passes: userinfo, a path (even ``/``), a query, a
    fragment, a backslash, a blank or a non-ASCII host never came from a browser."""
    match = _ORIGIN.fullmatch(value)
    if match is None or match[2] is not None:
        return ""
    scheme, host, port = match[1].lower(), match[3].lower(), match[4]
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return ""
    if port is None or int(port) == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{int(port)}" if int(port) <= 65535 else ""


def normalize_origin(origin: str) -> str:
    """An origin as configured (``--cors-origin``), in the form :func:`parse_origin` gives;
    "" if it is not one. Blanks around it and a final ``/`` are forgiven: a person wrote it."""
    return parse_origin(origin.strip().removesuffix("/"))


class Cors:
    """The allowlist (see the module docstring): exact origins, or ``*`` for any."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        listed = {o.strip() for o in origins if o.strip()}
        self.any = "*" in listed
        self.origins = {normalize_origin(o) for o in listed - {"*"}}
        if "" in self.origins:
            raise ValueError(f"--cors-origin takes origins like https://app.example or *, "
                             f"got {sorted(listed)}")

    @property
    def enabled(self) -> bool:
        return self.any or bool(self.origins)

    def allows(self, origin: str) -> bool:
        """Whether a request's ``Origin`` (as it came: see :func:`parse_origin`) is listed."""
        normal = parse_origin(origin)
        return bool(normal) and (self.any or normal in self.origins)

    def _origin_headers(self, origin: bytes) -> Headers:
        # The parsed form is echoed, not the header: it is what the browser compares.
        normal = parse_origin(origin.decode("latin-1"))
        if normal in self.origins:
            return [(b"access-control-allow-origin", normal.encode()),
                    (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
        return [(b"access-control-allow-origin", b"*"), (b"vary", b"Origin")]

    def response_headers(self, origin: bytes) -> Headers:
        """For a real response to an allowed origin."""
        return [*self._origin_headers(origin), (b"access-control-expose-headers", EXPOSED)]

    def preflight_headers(self, origin: bytes, requested: bytes | None) -> Headers:
        """For the 204 answer to an allowed origin's preflight: the requested headers that
        are allowed (the browser refuses the real request if one it needs is missing)."""
        wanted = [h.strip().lower() for h in (requested or b"").split(b",") if h.strip()]
        granted = [h for h in wanted if h in ALLOWED_HEADERS or h.startswith(ALLOWED_PREFIXES)]
        headers = [*self._origin_headers(origin), (b"access-control-allow-methods", METHODS),
                   (b"access-control-max-age", MAX_AGE)]
        if granted:
            headers.append((b"access-control-allow-headers", b", ".join(granted)))
        return headers
