"""The access log: one JSON object per request, on stderr, in a file, or off.

Never headers: ``Authorization``, keys and cookies cannot leak into it. The path is logged
without its query string (``Request.path``, never the target), where a token may be
(``?access_token=`` from an EventSource).

Lines are not written one by one: they wait in memory until the end of the current turn of the
event loop (or until 64 KiB wait), then go out in one ``write`` system call, so a busy relay
pays one call per turn instead of one per request. Nothing is lost on a stop: the relay closes
the log last (after its drain, on SIGTERM and SIGINT alike), which writes what waits. A write
that fails (a full disk, a closed pipe) is said once on stderr, the lines are kept (up to
``KEEP`` bytes) and written when the file takes them again; lines beyond that are counted and
the count is said when writing works again: never a silent loss.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from json.encoder import encode_basestring_ascii as _q  # a JSON string, quoted and escaped
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .record import Record

BATCH = 64 * 1024  # bytes that make a write at once, without waiting for the end of the turn
KEEP = 4 * 1024 * 1024  # bytes kept while writes fail
_LINE = ('{"time":"%s.%03dZ","client":%s,"method":%s,"path":%s,"status":%d,"upstream_status":%s,'
         '"bytes_in":%d,"bytes_out":%d,"events":%d,"ttfb_ms":%s,"duration_ms":%s,"ended":%s,'
         '"request_id":%s')


class AccessLog:
    """One JSON object per line, written per loop turn (see the module docstring)."""

    def __init__(self, fd: int | None, name: str = "", loop: asyncio.AbstractEventLoop | None
                 = None) -> None:
        self._fd, self._name, self._loop = fd, name, loop
        self._lines: list[bytes] = []
        self._size = 0
        self._due = False  # a flush is scheduled for the end of this turn
        self._failing = False
        self.lost = 0  # lines dropped while writes failed and KEEP was full
        self._second, self._stamp = -1, ""  # the last second formatted, and its text

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def write(self, record: Record, duration: float) -> None:
        if self._fd is None:
            return
        wall = record.wall_started
        second = int(wall)
        if second != self._second:  # (formatting a time costs more than the rest of a line)
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        # Formatted by hand, not by json.dumps of a dict (a third of the log's cost): strings
        # escaped by json's own C escaper, numbers by str and repr, as json.dumps writes them.
        ttfb = "null" if record.ttfb is None else repr(round(record.ttfb * 1000, 1))
        up = "null" if record.upstream_status is None else str(record.upstream_status)
        ended = "null" if record.ended is None else _q(record.ended)
        text = (_LINE % (self._stamp, int(wall % 1 * 1000), _q(record.client),
                         _q(record.method), _q(record.path), record.status, up, record.bytes_in,
                         record.bytes_out, record.events, ttfb, repr(round(duration * 1000, 1)),
                         ended, _q(record.request_id)))
        if record.stream_id is not None:  # (only for resumable streams: other lines unchanged)
            text += ',"stream_id":' + _q(record.stream_id)
            if record.replayed is not None:
                text += f',"replayed":{record.replayed}'
        if record.reason is not None:  # (only for requests refused before routing)
            text += ',"reason":' + _q(record.reason)
        line = (text + "}\n").encode()
        if self._failing and self._size + len(line) > KEEP:
            self.lost += 1  # (counted, and said when writing works again)
        else:
            self._lines.append(line)
            self._size += len(line)
        if self._size >= BATCH or self._loop is None:
            self.flush()
        elif not self._due:
            self._due = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what waits, in as few system calls as the file takes."""
        self._due = False
        if self._fd is None or not self._lines:
            return
        data = memoryview(b"".join(self._lines))
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            self._lines, self._size = [bytes(data)], len(data)  # (a line may be cut: kept whole)
            if not self._failing:
                self._failing = True
                _say(f"access log: cannot write to {self._name}: {exc.strerror or exc}; "
                     f"keeping lines in memory (up to {KEEP // 1024} KiB) until it can")
            return
        self._lines, self._size = [], 0
        if self._failing:
            self._failing = False
            _say(f"access log: writing to {self._name} again"
                 + (f"; {self.lost} lines were lost meanwhile" if self.lost else ""))
            self.lost = 0

    def close(self) -> None:
        """Write what waits (the relay stops), then close the file (never stderr)."""
        self.flush()
        if self._fd is not None and self._fd != sys.stderr.fileno():
            os.close(self._fd)
        self._fd = None


def _say(message: str) -> None:
    print(f"relay: {message}", file=sys.stderr, flush=True)


def open_access_log(where: str) -> tuple[int | None, str]:
    """``-``: stderr; ``off``: none; anything else: a file, appended to. (fd, name)."""
    if where == "off":
        return None, ""
    if where == "-":
        sys.stderr.flush()
        return sys.stderr.fileno(), "stderr"
    return os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), where
