"""The two messages handed between the layers: a client's request, and an upstream response head.

Both are plain data. h11 fills them in (in the two connection modules), everything else reads
them, so no module past the sockets sees an h11 event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]  # (lower-case name, value), in the order received


@dataclass(slots=True)
class Request:
    """A complete client request; the body is read whole (bounded by ``max_body_size``).

    ``keep_alive`` is False when the request itself ends the connection (HTTP/1.0, or
    ``Connection: close``): the response then says ``Connection: close`` and the connection
    closes after it.
    """

    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes
    body: bytes = b""
    keep_alive: bool = True
    # name -> first value, made when first asked (or a known head's, shared)
    fields: dict[bytes, bytes] | None = field(default=None, compare=False, repr=False)
    path: bytes = b""  # the target without its query (routes match it); a known head's given

    def __post_init__(self) -> None:
        if not self.path:
            self.path = self.target.split(b"?", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        fields = self.fields
        if fields is None:
            fields = self.fields = first_values(self.headers)
        return fields.get(name)


def first_values(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Each header name's first value (as :func:`relay.http1.headers.header_value` finds it).
    A known head's dict is shared by its requests: read it, never change it."""
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        fields.setdefault(name, value)
    return fields


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """An upstream response head, with what its framing says about the body.

    ``length``: the body's ``Content-Length`` when it has one (never for HEAD, 204 or 304);
    ``chunked``: the body is chunk-framed, so it can be forwarded with its own framing to a
    chunked client; neither: the body has no length (it ends when the upstream closes) or is
    empty.
    """

    status: int
    reason: bytes
    headers: Headers
    length: int | None
    chunked: bool
