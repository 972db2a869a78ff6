"""The relay's own answers: the bytes a client gets, and the record each one closes."""

from __future__ import annotations

import json

from relay.http1.messages import Request
from relay.net.exchange import Exchange
from relay.net.flow import WriteFlow
from relay.net.respond import respond, respond_error
from relay.ops.access_log import AccessLog
from relay.ops.observer import Observer
from relay.ops.record import Record

from ..support import FakeTransport


class _Owner:
    def exchange_ended(self, ex: Exchange) -> None:
        self.ended = ex


def _setup(path: bytes) -> tuple[Observer, Exchange, Record, FakeTransport]:
    clock = iter([1.0, 1.25, 1.5, 1.75])
    obs = Observer(AccessLog(None), lambda: next(clock), [])
    transport = FakeTransport()
    ex = Exchange(_Owner(), Request(b"POST", path, [], b"1.1"),  # type: ignore[arg-type]
                  transport, WriteFlow())
    return obs, ex, Record(b"POST", path, "", b"rid-7", 2, obs.clock()), transport


def test_an_answer_carries_its_request_id_and_closes_its_record() -> None:
    obs, ex, record, transport = _setup(b"/events/news")
    respond(obs, ex, record, 200, b'{"id": "1-0"}', extra=[(b"x-extra", b"1")])
    head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"x-extra: 1" in head
    assert b"x-request-id: rid-7" in head and b"content-type: application/json" in head
    assert body == b'{"id": "1-0"}'
    assert (record.status, record.bytes_out, record.ended, record.ttfb) == (200, 13, "complete",
                                                                            0.25)
    assert obs.requests.values == {("/events", "200"): 1}


def test_an_error_is_openai_style_with_the_type_its_status_gives() -> None:
    for status, kind in ((503, "server_error"), (429, "invalid_request_error")):
        obs, ex, record, transport = _setup(b"/v1/x")
        respond_error(obs, ex, record, status, "try later", "busy", [(b"retry-after", b"1")])
        head, _, body = bytes(transport.out).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status) and b"retry-after: 1" in head
        error = json.loads(body)["error"]
        assert (error["message"], error["type"], error["code"]) == ("try later", kind, "busy")
        assert record.ended == "complete" and record.bytes_out == len(body)
