"""Request heads already parsed, by their exact bytes (sans-IO: a bounded map, bytes in).

h11 parses a head in pure Python, and more slowly when the caches are cold, as they are when
thousands of connections take turns (bench/README.md has the figures). Most heads a relay
sees repeat byte for byte: a publisher posting events to a channel, an SDK on a keep-alive
connection, a load generator. Parsing a head is a pure function of its bytes (a fresh h11
connection, our own checks, the normalized target), so the answer for bytes already parsed is
the one they had:
:class:`KnownHeads` keeps it, and the request reader asks it before it hands a head to h11.

Only what can be reused exactly is kept: heads that passed every check (a refusal is decided
again each time), of at most ``max_head`` bytes, whose body is framed by ``Content-Length`` or
absent (a chunked body is decoded by the h11 connection that parsed its head, so that head is
always parsed). At most ``entries`` heads are kept; when full, the oldest goes first. One
byte of difference (another path, another length) is another head, parsed by h11.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .headers import keeps_alive
from .messages import Request, first_values
from .request_head import Rejection
from .target import normalize_target


@dataclass(slots=True)
class ParsedHead:
    """What a request head says, as h11 parsed it and the relay checked and normalized it.
    Read only: shared by every request of these bytes."""

    method: bytes
    target: bytes  # normalized path, then the query as it came
    headers: tuple[tuple[bytes, bytes], ...]
    http_version: bytes
    keep_alive: bool
    length: int  # the body's Content-Length (0 without one)
    chunked: bool
    expect_continue: bool  # the client waits for "100 Continue" before its body
    fields: dict[bytes, bytes]  # each name's first value (shared by the requests: read only)
    path: bytes = b""  # the target without its query

    @classmethod
    def of(cls, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]],
           http_version: bytes, expect_continue: bool) -> ParsedHead | Rejection:
        """From the fields of h11's ``Request`` event; a target the relay refuses is a
        :class:`Rejection`."""
        normalized = normalize_target(target)
        if isinstance(normalized, Rejection):
            return normalized
        items, joined = tuple(headers), b"".join(normalized)
        fields = first_values(items)
        return cls(method, joined, items, http_version, keeps_alive(http_version, items),
                   int(fields.get(b"content-length") or 0), b"transfer-encoding" in fields,
                   expect_continue, fields, joined.split(b"?", 1)[0])

    def request(self) -> Request:
        """A new request of this head (its own headers list: a request's are its own)."""
        return Request(self.method, self.target, list(self.headers), self.http_version,
                       keep_alive=self.keep_alive, fields=self.fields, path=self.path)


class KnownHeads:
    """Heads parsed before, by their bytes (see the module docstring). Shared by the
    connections of one listener."""

    __slots__ = ("_entries", "_heads", "_max_head", "get")

    def __init__(self, entries: int = 4096, max_head: int = 1024) -> None:
        self._heads: dict[bytes, ParsedHead] = {}
        self._entries, self._max_head = entries, max_head
        # What these bytes parsed to before, or None: the map's own lookup (every read of a
        # head asks it, so no method of ours runs in between).
        self.get: Callable[[bytes], ParsedHead | None] = self._heads.get

    def add(self, head: bytes, parsed: ParsedHead) -> None:
        """Keep ``parsed`` for ``head`` if it may be reused (see the module docstring)."""
        if parsed.chunked or len(head) > self._max_head or self._entries <= 0:
            return
        heads = self._heads
        if head not in heads and len(heads) >= self._entries:
            del heads[next(iter(heads))]  # (insertion order: the oldest)
        heads[head] = parsed

    def __len__(self) -> int:
        return len(self._heads)
