"""The access log: one write per loop turn, nothing lost on SIGTERM or SIGINT, and a full disk
said clearly (lines kept until the file takes them again, or counted)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from relay.ops import access_log
from relay.ops.access_log import AccessLog
from relay.ops.record import Record

from ..support import FakeLoop, H11Client, chat_body, connect, wait_until
from ..support.processes import spawn


def _record(i: int) -> Record:
    record = Record(b"GET", b"/healthz", "127.0.0.1:1", b"rid-%d" % i, 0, 0.0)
    record.status, record.ended = 200, "complete"
    return record


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    return r, w


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def _as_json_dumps(record: Record, duration: float, stamp: str) -> bytes:
    """The line as json.dumps of the fields would write it (the log formats it by hand)."""
    doc = {"time": stamp, "client": record.client, "method": record.method,
           "path": record.path, "status": record.status,
           "upstream_status": record.upstream_status, "bytes_in": record.bytes_in,
           "bytes_out": record.bytes_out, "events": record.events,
           "ttfb_ms": None if record.ttfb is None else round(record.ttfb * 1000, 1),
           "duration_ms": round(duration * 1000, 1), "ended": record.ended,
           "request_id": record.request_id}
    if record.stream_id is not None:
        doc["stream_id"] = record.stream_id
        if record.replayed is not None:
            doc["replayed"] = record.replayed
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


@pytest.mark.parametrize("case", range(4))
def test_a_line_is_exactly_what_json_dumps_would_write(case: int) -> None:
    """Odd paths (quotes, backslashes, non-ASCII), missing and present optional fields."""
    r, w = _pipe()
    log = AccessLog(w, "pipe", None)  # (no loop: each line written at once)
    record = Record(b"POST", ['/v1/a"b\\c', "/caf\xe9/\u2028", "/v1/x", "/"][case].encode(
        "latin-1", "replace"), "::1:5" if case else "", b"r\"%d" % case, 7 * case, 1.0)
    record.status, record.ended = [200, 502, 0, 204][case], [None, "complete", "timeout",
                                                             "client_disconnect"][case]
    record.upstream_status = [None, 503, None, 200][case]
    record.ttfb = [None, 0.01234, 1e-05, 12.5][case]
    record.bytes_out, record.events = 3 * case, case
    record.wall_started = 1_700_000_000.25 + case
    if case >= 2:
        record.stream_id, record.replayed = "rs_abc", (None if case == 2 else 4)
    log.write(record, [0.0, 0.0049, 123.456, 1e-9][case])
    line = _read(r)
    stamp = json.loads(line)["time"]
    assert stamp.startswith("2023-11-14T22:13:2") and stamp.endswith("Z")
    assert line == _as_json_dumps(record, [0.0, 0.0049, 123.456, 1e-9][case], stamp)
    os.close(r)
    os.close(w)


def test_query_credentials_of_real_requests_never_reach_the_log(tmp_path: Path) -> None:
    """A channel's EventSource gives its token as ?access_token=, a /v1/* query goes upstream
    as it came: neither shows in the log (the path is logged without its query)."""
    path = tmp_path / "access.log"
    with spawn("serve", "--port", "0", "--access-log", str(path), "--client-token",
               "tok-SECRET") as (_relay, port, _lines):
        for target in (b"/events/news?access_token=tok-SECRET",
                       b"/v1/models?api_key=sk-SECRET&access_token=tok-SECRET",
                       b"/nowhere?token=SECRET"):
            client = H11Client(connect(port))
            client.send(b"GET", target, headers=[(b"connection", b"close")])
            if not target.startswith(b"/events/"):
                client.read_reply()
        assert wait_until(lambda: path.exists() and path.read_text().count("\n") >= 2)
    text = path.read_text()
    assert "SECRET" not in text and '"path":"/nowhere"' in text


def test_lines_wait_for_the_end_of_the_turn_then_go_in_one_write(fake_loop: FakeLoop) -> None:
    r, w = _pipe()
    log = AccessLog(w, "pipe", fake_loop)  # type: ignore[arg-type]
    for i in range(3):
        log.write(_record(i), 0.001)
    assert _read(r) == b""  # not yet: the turn has not ended
    fake_loop.run_soon()
    lines = _read(r).splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["rid-0", "rid-1", "rid-2"]
    log.close()
    os.close(r)


def test_lines_still_waiting_when_the_log_closes_are_written(fake_loop: FakeLoop) -> None:
    """The relay's very last turn may end streams (the drain's deadline): their lines wait
    for a turn end that never comes, so the close writes them."""
    r, w = _pipe()
    log = AccessLog(w, "pipe", fake_loop)  # type: ignore[arg-type]
    log.write(_record(7), 0.0)
    log.close()  # (no turn ended)
    assert [json.loads(line)["request_id"] for line in _read(r).splitlines()] == ["rid-7"]
    os.close(r)


def test_a_full_batch_goes_at_once(fake_loop: FakeLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_log, "BATCH", 300)
    r, w = _pipe()
    log = AccessLog(w, "pipe", fake_loop)  # type: ignore[arg-type]
    log.write(_record(0), 0.0)
    assert _read(r) == b""
    log.write(_record(1), 0.0)  # over 300 bytes waiting: written now
    assert len(_read(r).splitlines()) == 2
    log.close()
    os.close(r)


def test_a_full_disk_is_said_once_lines_are_kept_then_written_or_counted(
        fake_loop: FakeLoop, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(access_log, "KEEP", 1000)
    full = os.open("/dev/full", os.O_WRONLY)
    log = AccessLog(full, "/dev/full", fake_loop)  # type: ignore[arg-type]
    for i in range(20):  # ~250 bytes each: 4 kept, 16 counted
        log.write(_record(i), 0.0)
        fake_loop.run_soon()
    err = capfd.readouterr().err
    assert err.count("cannot write to /dev/full: No space left on device") == 1
    r, w = _pipe()
    log._fd = w  # (the disk has room again)
    log.write(_record(99), 0.0)  # (no room kept for it: counted; the kept lines go out)
    fake_loop.run_soon()
    log.write(_record(100), 0.0)
    fake_loop.run_soon()
    written = [json.loads(line)["request_id"] for line in _read(r).splitlines()]
    kept = written[:-1]
    assert kept and kept == [f"rid-{i}" for i in range(len(kept))]  # in order, none cut
    assert written[-1] == "rid-100"
    said = capfd.readouterr().err
    lost = int(said.split("; ")[1].split()[0])
    assert len(kept) + lost == 21  # every line written or counted
    log.close()
    os.close(full)
    os.close(r)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_loses_no_line(tmp_path: Path, sig: signal.Signals) -> None:
    """300 answered requests, and 5 streams still open when the drain times out: those end in
    the relay's very last turn, and their lines too are in the file."""
    path = tmp_path / "access.log"
    with spawn("serve", "--port", "0", "--access-log", str(path), "--drain-timeout", "0.3"
               ) as (relay, port, _):
        client = H11Client(connect(port))
        for _ in range(300):
            client.send(b"GET", b"/healthz")
            assert client.read_reply().status == 200
            client.next_cycle()
        streams = [H11Client(connect(port)) for _ in range(5)]
        for s in streams:
            s.send(b"POST", b"/v1/chat/completions", chat_body(200))
            s.sock.recv(65536)  # started
        relay.send_signal(sig)
        assert relay.wait(10) == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 305
    assert sum(line["path"] == "/v1/chat/completions" for line in lines) == 5


def test_a_relay_logging_to_a_full_disk_serves_and_says_so() -> None:
    with spawn("serve", "--port", "0", "--access-log", "/dev/full") as (_relay, port, lines):
        client = H11Client(connect(port))
        client.send(b"GET", b"/healthz")
        assert client.read_reply().status == 200
        assert wait_until(lambda: any("cannot write to /dev/full" in line for line in lines))
