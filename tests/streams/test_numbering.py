"""Numbering a resumable stream's events: the upstream's bytes unchanged but for one ``id:``
line per event, which a conformant parser takes as the event's id, however the bytes are split."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from relay.streams.numbering import EventNumberer

from ..support.sse_parser import SSEParser

_ID_LINE = re.compile(rb"id: \d+(\r\n|\n|\r)")


def _all(numberer: EventNumberer, pieces: list[bytes]) -> list[tuple[int, bytes]]:
    out = [block for piece in pieces for block in numberer.feed(piece)]
    return out + numberer.finish()


def test_each_event_gets_the_next_id_before_its_blank_line() -> None:
    n = EventNumberer()
    assert n.feed(b"data: a\n\ndata: b\r\n\r\nevent: x\rdata: c\r\rdata: d") == [
        (1, b"data: a\nid: 1\n\n"), (2, b"data: b\r\nid: 2\r\n\r\n"),
        (3, b"event: x\rdata: c\rid: 3\r\r")]
    assert n.seq == 3


def test_comments_pass_unnumbered_and_a_cr_waits_for_its_lf() -> None:
    n = EventNumberer()
    assert n.feed(b": ping\n\ndata: a\r") == [(0, b": ping\n\n")]
    assert n.held == len(b"data: a\r")
    assert n.feed(b"\n") == []  # CRLF: one line end so far
    assert n.feed(b"\r\n") == [(1, b"data: a\r\nid: 1\r\n\r\n")]


def test_the_end_gives_what_was_held() -> None:
    n = EventNumberer()
    assert n.feed(b"data: a\r\r") == []  # perhaps CR CRLF: wait
    assert n.finish() == [(1, b"data: a\rid: 1\r\r")]
    n = EventNumberer()
    n.feed(b"data: torn")
    assert n.finish() == [(0, b"data: torn")]


def test_the_relays_id_wins_over_the_upstreams() -> None:
    n = EventNumberer()
    (_seq, block), = n.feed(b"id: upstream-7\ndata: a\n\n")
    assert SSEParser().feed(block)[0].id == "1"


_LINES = st.sampled_from([b"data: x", b"data: {\"a\": 1}", b": comment", b"event: e",
                          b"id: u", b"data:", b"retry: 10"])
_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 8))):
        for _ in range(draw(st.integers(1, 3))):
            out += draw(_LINES) + draw(_ENDS)
        out += draw(_ENDS)
    return out


@given(stream=_streams(), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_split_gives_the_same_bytes_and_the_parser_sees_ids_1_to_n(
        stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    whole = _all(EventNumberer(), [stream])
    assert _all(EventNumberer(), pieces) == whole
    out = b"".join(block for _, block in whole)
    assert _ID_LINE.sub(b"", out) == stream  # nothing changed but the id lines
    numbered = [seq for seq, _ in whole if seq]
    assert numbered == list(range(1, len(numbered) + 1))
    plain = SSEParser().feed(stream)
    events = SSEParser().feed(out)
    assert [e.data for e in events] == [e.data for e in plain]
    # Every dispatched event carries the number of its block (empty-data blocks dispatch none).
    assert all(e.id.isdigit() for e in events)
