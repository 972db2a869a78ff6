"""Who may use the relay through a browser: the Host check and the Origin check.

Two attacks need no bug in the relay, only a browser on the same machine:

* **DNS rebinding**: a page on ``evil.example`` re-points its own name at 127.0.0.1 and then
  talks to the relay as "same origin". Its requests carry ``Host: evil.example``. So when the
  relay listens on a loopback address, a ``Host`` that is not a loopback name or address (or
  one given with ``--allowed-host``) gets 421 Misdirected Request; on other addresses the check
  runs only when ``--allowed-host`` is given.
* **Drive-by pages**: a ``fetch`` POST with ``content-type: text/plain`` is a CORS "simple"
  request: the browser sends it without asking first, and the relay would spend its key on it
  although the page can never read the answer. Browsers mark every such request with
  ``Origin``, so a request whose ``Origin`` is neither the relay's own (same host and port as
  its ``Host``) nor an allowed one gets 403, before anything goes upstream. An ``Origin`` is
  read as browsers serialize it (``scheme://host[:port]``, :func:`relay.cors.parse_origin`):
  case and a default port written out are normalized as a URL parser would; userinfo
  (``https://evil.example@app.example``, or with ``\\@``), a path, a query, a fragment or a
  backslash never came from a browser, and are refused; so is ``null`` (sandboxed frames,
  ``file:`` pages), even with ``--cors-origin '*'``.
* **No-cors requests**: an ``<img>``, a link or a ``mode: "no-cors"`` fetch from another site
  sends a GET with no ``Origin`` at all, but browsers mark it ``Sec-Fetch-Site: cross-site``
  (``same-site`` from a sibling host, which the relay cannot tell from an allowed one without
  an ``Origin``). Such a request, with no ``Origin``, gets 403 on every path that can spend
  the key or act for a client: ``/v1/*`` (the proxy, resumable streams, their cancel) and any
  method but GET, HEAD and OPTIONS (a publish). Reading a channel and the local pages stay
  open: they spend nothing, the page cannot read a no-cors answer, and a link to the demo page
  from another site is a cross-site navigation.

Clients that are not browsers send neither header and are not affected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from .cors import DEFAULT_PORTS, Cors, parse_origin
from .http1.request_head import Rejection

_VERDICTS = 256  # Host values whose verdict is kept
_FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})  # Sec-Fetch-Site values refused
_SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, no port) can only mean this machine."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_check_on(listen_host: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether ``Host`` is checked: on a loopback address always, elsewhere only with
    ``--allowed-host`` (the banner says so when it is off)."""
    return bool(allowed_hosts) or is_loopback(listen_host)


def spends_key(method: bytes, path: bytes) -> bool:
    """Whether a request may spend the key or act for a client (the no-cors rule's scope)."""
    return path.startswith(b"/v1/") or method not in _SAFE_METHODS


def split_host(value: str) -> tuple[str, int | None]:
    """``Host`` header value to (host, port): ``[::1]:8080`` -> (``::1``, 8080)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    return host, int(port) if port.isdigit() else None


class Guard:
    """The Host and Origin checks (see the module docstring); ``cors``: the other origins
    allowed (``--cors-origin``)."""

    def __init__(self, listen_host: str, allowed_hosts: Sequence[str] = (),
                 cors: Cors | None = None) -> None:
        self._hosts = {split_host(h)[0] for h in allowed_hosts}
        self._check_host = host_check_on(listen_host, allowed_hosts)
        self.cors = cors or Cors()
        # Host values seen, and the verdict: a client sends the same few values again and
        # again, and parsing an address is costly next to a publish. Bounded: a client
        # sending a new Host per request only empties it.
        self._verdicts: dict[bytes, bool] = {}

    def check(self, raw: bytes | None, origin: bytes | None, fetch_site: bytes | None,
              method: bytes, path: bytes) -> Rejection | None:
        """A request's ``Host``, ``Origin`` and ``Sec-Fetch-Site`` (None when absent), method
        and normalized path: a refusal, or None. The one verdict for every way a request is
        answered (the router's, and the plan of a known head)."""
        # (No Host at all: only HTTP/1.0 may omit it, and no browser does.)
        if self._check_host and raw is not None and not self._known_host(raw):
            return Rejection(421, f"Host {raw.decode('latin-1')!r} is not served here (DNS "
                             "rebinding guard): use a loopback name, or start the relay with "
                             "--allowed-host")
        if origin is not None and not self.origin_allowed(origin.decode("latin-1"),
                                                          (raw or b"").decode("latin-1")):
            return Rejection(403, f"requests from the web origin {origin.decode('latin-1')!r} "
                             "are not allowed (see --cors-origin)")
        if (origin is None and fetch_site is not None and fetch_site.lower() in _FOREIGN_SITES
                and spends_key(method, path)):
            return Rejection(403, f"a {fetch_site.decode('latin-1')} request with no Origin "
                             "(an <img>, a link, a no-cors fetch from another page) cannot use "
                             "this path: send it with fetch from an allowed origin (see "
                             "--cors-origin)")
        return None

    def _known_host(self, raw: bytes) -> bool:
        verdict = self._verdicts.get(raw)
        if verdict is None:
            verdict = self.host_allowed(raw.decode("latin-1"))
            if len(self._verdicts) >= _VERDICTS:
                self._verdicts.clear()
            self._verdicts[raw] = verdict
        return verdict

    def host_allowed(self, host: str) -> bool:
        name, _ = split_host(host)
        return is_loopback(name) or name in self._hosts

    def origin_allowed(self, origin: str, host: str) -> bool:
        """An allowed origin, or the relay's own: the same host and port as ``Host``."""
        normal = parse_origin(origin)
        if not normal:
            return False  # "null" (sandboxed frames, file:) and anything no browser sends
        if self.cors.allows(normal):
            return True
        scheme, authority = normal.split("://", 1)
        own_host, own_port = split_host(host)
        origin_host, origin_port = split_host(authority)
        default = DEFAULT_PORTS[scheme]  # a same-origin page shares the request's scheme
        return origin_host == own_host and (origin_port or default) == (own_port or default)
