"""The one fake transport: the parts of an asyncio transport the relay's protocols use, recorded.

Protocols are driven by calling their callbacks (``data_received``, ``eof_received``...) by
hand; what they write, and whether they closed, aborted or paused reading, is kept here.
``pause_writing``/``resume_writing`` are called on the protocol by the test when it wants
backpressure.
"""

from __future__ import annotations

from typing import Any


class FakeTransport:
    def __init__(self, peer: Any = ("127.0.0.1", 40000)) -> None:
        self.out = bytearray()
        self.closed = self.aborted = False
        self.reading = True
        self.reading_calls: list[str] = []  # "pause" / "resume", in order
        self.water: tuple[int, int] | None = None
        self.buffered = 0  # what get_write_buffer_size() answers (a test sets it)
        self._peer = peer

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return False  # (so a refusal closes at once; its lingering close is tested on sockets)

    def pause_reading(self) -> None:
        self.reading = False
        self.reading_calls.append("pause")

    def resume_reading(self) -> None:
        self.reading = True
        self.reading_calls.append("resume")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.water = (high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peer if name == "peername" else default

    def take(self) -> bytes:
        """What was written since the last call."""
        data = bytes(self.out)
        self.out.clear()
        return data
