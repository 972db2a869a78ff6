"""The relay's own answers (a publish's, a health check's, an error of its own), with their
record: the status, the time to the first byte and the bytes out set on the request's
:class:`~relay.ops.record.Record`, the request id added to the head, and the record finished,
so each such answer has its access-log line and its counts, whichever endpoint gives it."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import error_body, error_type
from ..ops.observer import Observer
from ..ops.record import Record
from .exchange import Exchange


def respond(obs: Observer, ex: Exchange, record: Record, status: int, body: bytes,
            content_type: bytes = b"application/json",
            extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A whole answer of the relay's own (with its request id), and its record closed."""
    record.status = status
    record.ttfb = obs.clock() - record.started
    ex.respond(status, body, content_type, [*extra, (b"x-request-id", record.rid)])
    record.bytes_out = len(body)
    obs.finish(record, "complete")


def respond_error(obs: Observer, ex: Exchange, record: Record, status: int, message: str,
                  code: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """An OpenAI-style error answer of the relay's own."""
    respond(obs, ex, record, status, error_body(message, error_type(status), code),
            b"application/json", extra)
