"""The access log: one JSON object per request, on stderr, in a file, or off.

Never headers: ``Authorization``, keys and cookies cannot leak into it. The path is logged
without its query string.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .observer import Record


class AccessLog:
    """One JSON object per line. Never headers: ``Authorization`` and keys cannot leak."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def write(self, record: Record, duration: float) -> None:
        if self._stream is None:
            return
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.wall_started))
            + f".{int(record.wall_started % 1 * 1000):03d}Z",
            "client": record.client, "method": record.method, "path": record.path,
            "status": record.status, "upstream_status": record.upstream_status,
            "bytes_in": record.bytes_in, "bytes_out": record.bytes_out, "events": record.events,
            "ttfb_ms": None if record.ttfb is None else round(record.ttfb * 1000, 1),
            "duration_ms": round(duration * 1000, 1), "ended": record.ended,
            "request_id": record.request_id,
        }
        if record.stream_id is not None:  # (only for resumable streams: other lines unchanged)
            doc["stream_id"] = record.stream_id
            if record.replayed is not None:
                doc["replayed"] = record.replayed
        self._stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._stream.flush()


def open_access_log(where: str) -> TextIO | None:
    """``-``: stderr; ``off``: none; anything else: a file, appended to, line by line."""
    if where == "off":
        return None
    if where == "-":
        return sys.stderr
    return open(where, "a", buffering=1, encoding="utf-8")  # closed by Relay.close()
