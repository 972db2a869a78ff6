"""Bearer-token auth for the relay itself (``--client-token`` / ``RELAY_CLIENT_TOKENS``).

Off by default: on 127.0.0.1 the loopback boundary is the protection. When tokens are set, a
``/v1/*`` request must carry ``Authorization: Bearer <one of them>`` or gets 401 before anything
goes upstream. Every configured token is compared, each with :func:`hmac.compare_digest`, and
the loop never stops early, so the time taken says nothing about which bytes or which token
matched. The client's token is never forwarded: the relay drops the client's ``Authorization``
(see :func:`relay.headers.upstream_request_headers`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path


def parse_tokens(spec: str) -> tuple[str, ...]:
    """``"a,b"`` (comma-separated) or ``"@/path/file"`` (one token per line, ``#`` comments)."""
    if spec.startswith("@"):
        lines = Path(spec[1:]).read_text().splitlines()
        items = [line.split("#", 1)[0] for line in lines]
    else:
        items = spec.split(",")
    tokens = tuple(t.strip() for t in items if t.strip())
    if spec.strip() and not tokens:
        raise ValueError("--client-token given but no token found in it")
    return tokens


class ClientAuth:
    """Checks a request's bearer token against the configured ones (see the module docstring)."""

    __slots__ = ("_tokens",)

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def allows(self, authorization: bytes | None) -> bool:
        if not self._tokens:
            return True
        scheme, _, presented = (authorization or b"").partition(b" ")
        presented = presented.strip()
        ok = False
        for token in self._tokens:  # no early exit: the same work whichever token matches
            ok |= hmac.compare_digest(presented, token)
        return ok and scheme.lower() == b"bearer"

    @staticmethod
    def presented(authorization: bytes | None, query: dict[str, str]) -> bytes | None:
        """The credentials a request shows: its ``access_token`` query parameter (an
        ``EventSource`` cannot send headers) as a bearer token, else its ``Authorization``."""
        token = query.get("access_token")
        return b"Bearer " + token.encode() if token else authorization

    def owner(self, authorization: bytes | None) -> bytes | None:
        """Who a request is, for binding what it starts (a resumable stream) to its token: a
        digest of the token (never the token itself), or None when tokens are off."""
        if not self._tokens:
            return None
        presented = (authorization or b"").partition(b" ")[2].strip()
        return hashlib.sha256(presented).digest()

    @staticmethod
    def same_owner(a: bytes | None, b: bytes | None) -> bool:
        if a is None or b is None:
            return a is b
        return hmac.compare_digest(a, b)
