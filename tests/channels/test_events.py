"""Event ids and the bytes of an event, encoded once."""

from __future__ import annotations

import pytest

from relay.channels.events import (
    ChannelEvent,
    data_text,
    format_id,
    next_key,
    parse_id,
    reset_event,
)

from ..support.sse_parser import SSEParser


def test_ids_parse_compare_and_keep_growing() -> None:
    assert parse_id("1700000000000-3") == (1700000000000, 3)
    assert format_id((1700000000000, 3)) == "1700000000000-3"
    for bad in ("", "12", "a-1", "1-2-3", "-1", "1 -2", "9" * 16 + "-0"):
        assert parse_id(bad) is None, bad
    assert next_key(None, 1700000000.0001) == (1700000000000, 0)
    assert next_key((1700000000000, 0), 1700000000.0005) == (1700000000000, 1)  # same ms
    assert next_key((1700000000000, 4), 1699999999.0) == (1700000000000, 5)  # clock went back
    assert next_key((1700000000000, 4), 1700000000.002) == (1700000000002, 0)


def test_an_event_is_encoded_once_raw_and_framed() -> None:
    event = ChannelEvent((5, 1), "line one\nline two", "update")
    assert event.raw == b"event: update\nid: 5-1\ndata: line one\ndata: line two\n\n"
    assert event.framed == b"%x\r\n%s\r\n" % (len(event.raw), event.raw)
    [parsed] = SSEParser().feed(event.raw)
    assert (parsed.data, parsed.event, parsed.id) == ("line one\nline two", "update", "5-1")
    assert data_text({"a": [1, 2]}) == '{"a":[1,2]}' and data_text("x") == "x"


@pytest.mark.parametrize("data", ["x", "", " lead", "a:b", "caf\u00e9 \u2028", "one\ntwo",
                                  "cr\rlf", "crlf\r\n", "\n", "{\"k\": [1]}"])
@pytest.mark.parametrize("name", [None, "update"])
def test_an_event_parses_back_to_its_data_name_and_id(data: str, name: str | None) -> None:
    event = ChannelEvent((1700000000000, 42), data, name)
    [parsed] = SSEParser().feed(event.raw)
    # (A parser takes any of CRLF, CR and LF inside data as one line end: LF.)
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert (parsed.data, parsed.event, parsed.id) == (expected, name or "message",
                                                             "1700000000000-42")


def test_the_reset_event_is_typed_and_carries_no_id() -> None:
    [parsed] = SSEParser().feed(reset_event("7-0"))
    assert parsed.event == "relay.reset" and parsed.id == "" and '"oldest":"7-0"' in parsed.data
