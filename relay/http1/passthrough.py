"""A chunked upstream body forwarded *with its own framing* to a chunked client (the hot path).

When both hops are chunked, the upstream's framing already says what the client needs: one
chunk per upstream write. So instead of decoding payloads and framing them again,
:class:`ChunkedPassthrough` walks the chunk headers to validate them and to find the end of the
body, and ``feed`` returns slices of already-framed bytes to write as they are. A read made of
whole chunks (the usual case) comes back as one slice, the read itself, not copied.
"""

from __future__ import annotations

from .chunks import ChunkScanner, Output


class ChunkedPassthrough(ChunkScanner):
    """Validates a chunked body and returns it still framed: the chunk scanner
    (:mod:`relay.http1.chunks`) with its ``FRAMED`` output.

    Two cases are re-framed instead, so the client's stream always stops at a chunk boundary
    (and a final SSE error event can always be appended): a chunk split across reads (its
    parts go out as chunks of their own) and a size line that is not plain hex (extensions
    and leading zeros are dropped). The terminal chunk and trailers are consumed, not
    forwarded: the client side writes the last chunk itself. ``tail`` holds the last 4 payload
    bytes, for the event-boundary check the relay makes when a heartbeat or an error is due.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(Output.FRAMED)
