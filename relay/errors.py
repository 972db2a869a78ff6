"""The relay's exception tree and the OpenAI-style error bodies it sends.

Each upstream failure maps to one HTTP status (before the response head went out) and to one
final SSE ``error`` event (after). The body shape is OpenAI's, so SDKs raise a readable error:
``{"error": {"message": ..., "type": ..., "param": null, "code": ...}}``.
"""

from __future__ import annotations

import json

_ASKED_WRONG = frozenset({501, 505})  # a method, an HTTP version: the request must change


def error_type(status: int) -> str:
    """The OpenAI ``type`` of a refusal the relay makes itself: ``server_error`` when the relay
    or a dependency cannot serve now (500, 503...: a retry may work), ``invalid_request_error``
    for the client's mistakes (4xx, and 501/505, which refuse what it asked for)."""
    return "server_error" if status >= 500 and status not in _ASKED_WRONG else (
        "invalid_request_error")


class RelayError(Exception):
    """An upstream problem the relay reports to its client."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    headers: tuple[tuple[bytes, bytes], ...] = ()  # extra response headers (Retry-After...)

    def body(self) -> bytes:
        return error_body(str(self), self.type, self.code)


class UpstreamConnectError(RelayError):
    """Connection refused, DNS failure, TLS verification failure: 502."""

    code = "upstream_connect_failed"


class UpstreamTimeout(RelayError):
    """Connect or first-byte timeout (504 before the head; an SSE error event after)."""

    status = 504
    type = "timeout"
    code = "upstream_timeout"


class UpstreamProtocolError(RelayError):
    """The upstream sent something that is not valid HTTP/1.1 (bad status line, bad chunking)."""

    code = "upstream_protocol_error"


class UpstreamBusy(RelayError):
    """Every upstream connection the relay may open is in use, and none freed up in time."""

    status = 503
    type = "server_error"
    code = "upstream_busy"
    headers = ((b"retry-after", b"1"),)


class RelayShutdown(RelayError):
    """The relay is stopping and its drain timeout passed with this stream still open."""

    status = 503
    type = "server_error"
    code = "relay_shutdown"


class ResumeCapacity(RelayError):
    """Resumable streams hold all the memory they may (``--resume-memory``): a new one is
    refused before anything goes upstream."""

    status = 503
    type = "server_error"
    code = "resume_capacity"
    headers = ((b"retry-after", b"1"),)

    def __init__(self, message: str = "resumable streams hold all the memory the relay gives "
                 "them; retry later, or without X-Relay-Resumable") -> None:
        super().__init__(message)


class StreamStoreUnavailable(RelayError):
    """Redis (where other instances' streams are) cannot be reached: 503, retry later."""

    status, type, code = 503, "server_error", "stream_store_unavailable"
    headers = ((b"retry-after", b"1"),)


class UpstreamClosed(RelayError):
    """The upstream closed or reset the connection before its response was complete."""

    code = "upstream_closed"


class StartupError(Exception):
    """The relay cannot start as configured (port in use, address not local, bad files): the
    command line prints one line and exits 2."""


def listen_error(host: str, port: int, exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).rsplit("): ", 1)[-1]  # (uvloop repeats the address)
    return f"cannot listen on {host}:{port}: {reason}"


class ClientGone(Exception):
    """The client connection is gone; raised to wake coroutines waiting to write to it."""


def error_body(message: str, type_: str, code: str | None) -> bytes:
    """An OpenAI-style JSON error document."""
    doc = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return json.dumps(doc, separators=(",", ":")).encode()


def sse_error_event(error: RelayError) -> bytes:
    """The final event sent when a stream fails after it started: one ``data:`` line + blank line.

    SDKs (openai-python among them) raise an APIError on a data payload with an ``error`` key.
    """
    return b"data: " + error.body() + b"\n\n"
