"""Event streams: the oracle parser against the WHATWG HTML rules (9.2.5 parsing, 9.2.6
interpreting), then the relay's own rules (encoding, the boundary rule, [DONE]) against it.

Each conformance case names the rule it checks. Then property tests: encode, split anywhere,
parse back; and the boundary rule, which places heartbeats and error events, against the
parser itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http1.sse import HEARTBEAT, encode_event, ends_with_done, tail_between_events

from ..support.sse_parser import Event, SSEParser

E = Event

# (rule, input bytes, expected events, expected retry)
CASES: list[tuple[str, bytes, list[Event], int | None]] = [
    ("blank line dispatches the event", b"data: a\n\n", [E("a")], None),
    ("no blank line: nothing dispatched", b"data: a\n", [], None),
    ("LF line ends", b"data: a\ndata: b\n\n", [E("a\nb")], None),
    ("CRLF line ends", b"data: a\r\ndata: b\r\n\r\n", [E("a\nb")], None),
    ("CR line ends", b"data: a\rdata: b\r\r", [E("a\nb")], None),
    ("mixed line ends", b"data: a\r\ndata: b\rdata: c\n\n", [E("a\nb\nc")], None),
    ("line starting with a colon is a comment", b": hello\ndata: a\n\n", [E("a")], None),
    ("a comment alone dispatches nothing", b": ping\n\n", [], None),
    ("one space after the colon is removed", b"data:  two spaces\n\n", [E(" two spaces")], None),
    ("no space after the colon", b"data:x\n\n", [E("x")], None),
    ("field without colon: whole line is the name, value empty (buffer is LF: dispatched)",
     b"data\n\n", [E("")], None),
    ("data without colon appends an empty line", b"data\ndata: x\n\n", [E("\nx")], None),
    ("value may contain colons", b"data: a:b: c\n\n", [E("a:b: c")], None),
    ("trailing LF of the data buffer is removed once", b"data: a\ndata:\n\n", [E("a\n")], None),
    ("event field sets the type", b"event: add\ndata: 1\n\n", [E("1", "add")], None),
    ("type resets to message after dispatch", b"event: add\ndata: 1\n\ndata: 2\n\n",
     [E("1", "add"), E("2")], None),
    ("empty event field means message", b"event:\ndata: 1\n\n", [E("1")], None),
    ("empty data buffer: no dispatch, type reset", b"event: x\n\ndata: 1\n\n", [E("1")], None),
    ("id sets the last event id", b"id: 7\ndata: a\n\n", [E("a", id="7")], None),
    ("last event id persists", b"id: 7\ndata: a\n\ndata: b\n\n", [E("a", id="7"),
                                                                  E("b", id="7")], None),
    ("empty id resets the last event id", b"id: 7\ndata: a\n\nid\ndata: b\n\n",
     [E("a", id="7"), E("b", id="")], None),
    ("id containing NUL is ignored", b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
     [E("a", id="1"), E("b", id="1")], None),
    ("id without data dispatches nothing", b"id: 9\n\n", [], None),
    ("retry with digits sets the reconnection time", b"retry: 1500\n\n", [], 1500),
    ("retry with non-digits is ignored", b"retry: 15x\n\nretry: 1.5\n\n", [], None),
    ("retry with a space only after the colon", b"retry:  20\n\n", [], None),
    ("unknown fields are ignored", b"foo: bar\ndata: a\n\n", [E("a")], None),
    ("field names are case-sensitive", b"Data: a\n\n", [], None),
    ("leading BOM is ignored", b"\xef\xbb\xbfdata: a\n\n", [E("a")], None),
    ("only one BOM is ignored", b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", [], None),
    ("invalid UTF-8 becomes U+FFFD", b"data: \xff\n\n", [E("\ufffd")], None),
    ("unterminated event at end is discarded", b"data: a\n\ndata: b", [E("a")], None),
    ("several events in one feed", b"data: 1\n\ndata: 2\n\n", [E("1"), E("2")], None),
    ("two blank lines: the second dispatches nothing", b"data: 1\n\n\n", [E("1")], None),
    ("space before the colon is part of the name", b"data : a\n\n", [], None),
]


@pytest.mark.parametrize(("rule", "raw", "expected", "retry"), CASES,
                         ids=[c[0] for c in CASES])
def test_conformance(rule: str, raw: bytes, expected: list[Event], retry: int | None) -> None:
    whole = SSEParser()
    assert whole.feed(raw) + whole.close() == expected, rule
    assert whole.retry == retry
    bytewise = SSEParser()  # the same, one byte at a time
    got = [e for i in range(len(raw)) for e in bytewise.feed(raw[i : i + 1])]
    assert got == expected, rule
    assert bytewise.retry == retry


def test_at_least_30_conformance_cases() -> None:
    assert len(CASES) >= 30


def test_crlf_split_across_feeds_is_one_line_end() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\n") == []  # not a blank line: the LF completes the CRLF
    assert p.feed(b"\r\n") == [E("a")]


def test_utf8_split_across_feeds() -> None:
    p = SSEParser()
    snowman = "☃".encode()
    assert p.feed(b"data: " + snowman[:1]) == []
    assert p.feed(snowman[1:] + b"\n\n") == [E("☃")]


def test_encode_event() -> None:
    assert encode_event("a\nb\r\nc\rd", event="x", id="1", retry=100) == (
        b"event: x\nid: 1\nretry: 100\ndata: a\ndata: b\ndata: c\ndata: d\n\n")
    assert encode_event(" lead") == b"data:  lead\n\n"
    for bad in ({"event": "a\nb"}, {"id": "1\r"}, {"id": "1\x00"}, {"retry": -1}):
        with pytest.raises(ValueError):
            encode_event("x", **bad)  # type: ignore[arg-type]


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.tuples(text, st.one_of(st.none(), text.filter(lambda s: "\r" not in s
                                                                        and "\n" not in s
                                                                        and s != ""))),
                       max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_encode_split_parse_roundtrip(events: list[tuple[str, str | None]],
                                      cuts: list[int]) -> None:
    raw = b"".join(encode_event(d, event=t) for d, t in events)
    p = SSEParser()
    got: list[Event] = []
    prev = 0
    for cut in [*sorted({c for c in cuts if c <= len(raw)}), len(raw)]:
        got += p.feed(raw[prev:cut])
        prev = cut
    # encode_event splits data on CR, CRLF and LF; all of them come back as LF.
    import re

    expected = [E(re.sub(r"\r\n|\r", "\n", d), t or "message") for d, t in events]
    assert got == expected


@settings(max_examples=500, deadline=None)
@given(chunks=st.lists(st.sampled_from([b"data: x", b"\n", b"\r", b"\r\n", b": c", b"id: 1",
                                        b"y"]), max_size=12))
def test_boundary_rule_agrees_with_the_parser(chunks: list[bytes]) -> None:
    """Where the rule says 'between events', appending a heartbeat comment and then
    ``data: z`` and a blank line parses to the same events as without the comment; where it
    says not, a blank line first (what the relay writes before its error event) ends what came
    before, and the error event still parses as an event of its own."""
    raw = b"".join(chunks)
    tail = b"data: z\n\n"
    if tail_between_events(raw[-4:]):
        assert SSEParser().feed(raw + tail) == SSEParser().feed(raw + HEARTBEAT + tail)
    else:
        assert SSEParser().feed(raw + b"\n\n" + tail)[-1] == Event("z", id=_last_id(raw))


def _last_id(raw: bytes) -> str:
    parser = SSEParser()
    events = parser.feed(raw + b"\n\ndata: probe\n\n")
    return events[-1].id


def test_boundary_rule_cases() -> None:
    assert tail_between_events(b"")
    for at in (b"data: a\n\n", b"data: a\r\n\r\n", b"\n\n", b"a\r\r\n", b"a\n\r\n"):
        assert tail_between_events(at[-4:]), at
    for not_at in (b"data: a\n", b"data: a", b"data: a\r\n", b"data: a\r\n\r", b"a\r\r"):
        assert not tail_between_events(not_at[-4:]), not_at  # a lone CR: an LF may follow


def test_done_is_found_in_any_line_end_style() -> None:
    for done in (b"data: [DONE]\n\n", b"data:[DONE]\r\n\r\n", b"x\n\ndata: [DONE]\r\r",
                 b"data: [DONE]"):
        assert ends_with_done(done), done
    for not_done in (b"data: [DONE]\n\ndata: {}\n\n", b"", b"data: {}\n\n"):
        assert not ends_with_done(not_done), not_done
