"""Pure header rewriting for both directions of the relay (no I/O, no h11).

Headers are lists of ``(name, value)`` byte pairs with lower-case names, as h11 hands them over.
A proxy must drop hop-by-hop headers (RFC 9110 section 7.6.1): they describe one connection, not
the message, and forwarding them (``Connection: close``, ``Transfer-Encoding``...) would make the
next hop frame the message wrongly.
"""

from __future__ import annotations

from collections.abc import Iterable

from .messages import Headers

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Set by the relay itself on upstream requests, so the client's values are dropped.
# (x-relay-resumable: the relay's own opt-in, asked of the relay, not of the upstream.)
_REQUEST_OWNED = frozenset({b"host", b"content-length", b"expect", b"accept-encoding",
                            b"x-relay-resumable"})


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in ``Connection`` (they are hop-by-hop too, RFC 9110 7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def keeps_alive(http_version: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request lets its connection carry another (RFC 9112 9.3, as h11 decides it):
    HTTP/1.1 with no ``close`` in ``Connection``, and no ``Upgrade`` (the relay switches to no
    other protocol: h11 then ends the connection after the answer)."""
    items = list(headers)
    return (http_version == b"1.1" and b"close" not in connection_tokens(items)
            and not any(name == b"upgrade" for name, _ in items))


def is_hop_by_hop(name: bytes, listed: set[bytes]) -> bool:
    return name in HOP_BY_HOP or name.startswith(b"proxy-") or name in listed


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    items = list(headers)
    listed = connection_tokens(items)
    return [(n, v) for n, v in items if not is_hop_by_hop(n, listed)]


def upstream_request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    host: bytes,
    body_length: int,
    api_key: str | None,
    drop_authorization: bool = False,
    request_id: bytes | None = None,
) -> Headers:
    """The header list sent upstream for one client request.

    ``Host`` becomes the upstream's; the body is re-framed with ``Content-Length`` (the relay reads
    request bodies whole); ``Accept-Encoding: identity`` keeps streams uncompressed so every event
    can be flushed as it arrives; with a configured key the client's ``Authorization`` is replaced,
    and with ``drop_authorization`` (client tokens on: it holds the relay's token) it is dropped.
    Names with an underscore are never forwarded (nginx's default, ``underscores_in_headers
    off``): ``X_Api_Key`` and ``X-Api-Key`` are one header to servers that map ``-`` to ``_``.
    """
    drop_auth = api_key is not None or drop_authorization
    out: Headers = [(b"host", host)]
    for name, value in strip_hop_by_hop(headers):
        if name in _REQUEST_OWNED or (drop_auth and name == b"authorization") or b"_" in name:
            continue
        if request_id is not None and name == b"x-request-id":
            continue  # replaced by the relay's (the client's own, when it sent a sane one)
        out.append((name, value))
    if body_length:
        out.append((b"content-length", str(body_length).encode()))
    out.append((b"accept-encoding", b"identity"))
    if api_key is not None:
        out.append((b"authorization", b"Bearer " + api_key.encode()))
    if request_id is not None:
        out.append((b"x-request-id", request_id))
    return out


def client_response_headers(headers: Iterable[tuple[bytes, bytes]],
                            request_id: bytes | None = None) -> Headers:
    """Upstream response headers minus hop-by-hop ones and ``Content-Length``.

    The server side re-adds the length (or chooses chunked / close-delimited framing) itself.
    With ``request_id``, the response carries the relay's ``X-Request-ID``; an upstream's own id
    (OpenAI sends one) is kept as ``X-Upstream-Request-ID``.
    """
    out = []
    for n, v in strip_hop_by_hop(headers):
        if n == b"content-length":
            continue
        if request_id is not None and n == b"x-request-id":
            if v != request_id:
                out.append((b"x-upstream-request-id", v))
            continue
        out.append((n, v))
    if request_id is not None:
        out.append((b"x-request-id", request_id))
    return out


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None


def is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    ctype = header_value(headers, b"content-type") or b""
    return ctype.split(b";", 1)[0].strip().lower() == b"text/event-stream"
