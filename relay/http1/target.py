"""The request target, normalized before anything routes on it (RFC 3986 sections 5.2.4, 6.2.2).

h11 hands the target over as it came. ``/v1/../admin`` and ``/v1/%2e%2e/admin`` both start
with ``/v1/``, and both mean ``/admin``: a relay that routed on the raw bytes would send them
upstream with its key. So the relay routes on the normalized path, and forwards that path (with
the query as it came), as Envoy does with ``normalize_path`` and ``merge_slashes`` on:

* percent-encoded unreserved characters (letters, digits, ``-._~``: ``%2e`` for a dot,
  ``%73`` for an ``s``) are decoded, as RFC 3986 6.2.2.2 says, so ``/v1/%73treams/`` is the
  relay's own ``/v1/streams/`` and never goes upstream, and dot segments are removed (5.2.4);
* repeated slashes are merged into one (nginx's ``merge_slashes``, on by default);
* an encoded slash or backslash (``%2f``, ``%5c``), a backslash, an encoded percent sign
  (``%25``: a second decoding upstream could make it a dot or a slash), a fragment (``#``) or
  a NUL in the path is refused: no client has a use for them, and each is a known way to make
  two parsers see two paths.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from .request_head import Rejection

_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_REFUSED = re.compile(rb"%(?:2[fF]|5[cC]|25|00)|[\\#\x00]")
_SLASHES = re.compile(rb"//+")


def normalize_target(target: bytes) -> tuple[bytes, bytes] | Rejection:
    """``(path, query)`` of an origin-form target (the query with its ``?``, or empty), the path
    normalized; or the :class:`Rejection` of a target the relay refuses."""
    path, mark, query = target.partition(b"?")
    if _REFUSED.search(path):
        return Rejection(400, "the request path holds an encoded slash, backslash or percent "
                         "sign, a fragment or a NUL: refused")
    if b"%" in path:
        path = _ESCAPE.sub(_unreserved, path)
    return remove_dot_segments(_SLASHES.sub(b"/", path)), mark + query


def _unreserved(m: re.Match[bytes]) -> bytes:
    """An escape of an unreserved character, decoded; any other escape, as it was."""
    code = int(m.group()[1:], 16)
    return bytes((code,)) if code in _UNRESERVED else m.group()


def query_params(target: bytes) -> dict[str, str]:
    """The query parameters (first value of each); never logged (the path is, without it)."""
    return {k: v[0] for k, v in parse_qs(target.partition(b"?")[2].decode("latin-1")).items()}


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 5.2.4 for an absolute path: ``.`` segments vanish, ``..`` removes the segment
    before it (never above the root); a path ending in a dot segment keeps its final slash."""
    out: list[bytes] = []
    segments = path.split(b"/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == b".":
            if last:
                out.append(b"")
        elif segment == b"..":
            if out:
                out.pop()
            if last:
                out.append(b"")
        else:
            out.append(segment)
    return b"/" + b"/".join(out)
