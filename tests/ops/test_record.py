"""The per-request record: its route label, its request id, its text read back from bytes."""

from __future__ import annotations

from relay.ops.record import Record, request_id, route_of


def test_route_labels_are_a_few_routes_never_the_path() -> None:
    assert route_of(b"/v1/chat/completions") == "/v1"
    assert route_of(b"/events/news") == "/events"
    assert route_of(b"/healthz") == "/healthz" and route_of(b"/metrics") == "/metrics"
    assert route_of(b"/anything/else") == "other"


def test_a_sane_client_request_id_is_kept_and_any_other_replaced() -> None:
    assert request_id(b"client-id_1.2:3") == b"client-id_1.2:3"
    for given in (None, b"", b"has space", b"x" * 129):
        made = request_id(given)
        assert made != given and len(made) == 24 and int(made, 16) >= 0
    assert request_id(None) != request_id(None)


def test_a_record_keeps_bytes_and_decodes_them_when_read() -> None:
    record = Record(b"POST", b"/events/caf\xe9", "127.0.0.1:5", b"rid-1", 12, now=3.0)
    assert (record.method, record.path, record.request_id) == ("POST", "/events/café", "rid-1")
    assert record.route == "/events" and record.bytes_in == 12 and record.started == 3.0
    assert record.ended is None and record.status == 0 and record.ttfb is None
