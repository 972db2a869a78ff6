"""The demo page and browser clients, in headless Chromium (Debian's, driven by playwright):
streaming with fetch, EventSource channels, another origin with and without CORS, and an
EventSource that outlives a restart of the relay."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.mock import completion_text

from ..conftest import MockServer, RelayFactory
from ..support import H11Client, LoopThread, connect, publish, scrape
from ..support.browser import chromium
from ..support.cutter import Cutter
from ..support.processes import spawn
from ..support.redis_server import RedisServer


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_the_demo_page_streams_a_completion(browser: Any, make_relay: RelayFactory,
                                            tmp_path: Path) -> None:
    relay = make_relay(mock_delay_ms=40)  # the built-in mock, paced like a model
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{relay.port}/")
    page.click("#send")
    page.wait_for_selector('#answer[data-done="1"]', timeout=20_000)
    assert page.inner_text("#answer") == completion_text(16)
    assert page.inner_text("#chat-status") == "done"
    assert int(page.inner_text("#reads")) >= 10  # tokens came in many reads, not one burst
    assert page.inner_text("#ttft").endswith(" ms")
    page.screenshot(path=str(tmp_path / "demo.png"))  # (kept out of the repo)


def test_the_demo_page_publishes_and_receives_on_a_channel(browser: Any,
                                                           make_relay: RelayFactory) -> None:
    relay = make_relay()
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{relay.port}/")
    _wait_status(page, "open")
    page.fill("#message", "from the page")
    page.click("#publish")
    publish(relay.port, "demo", "from a script")
    _wait_events(page, 2)
    assert [text for _, text in _events(page)] == ["from the page", "from a script"]


# The demo page's Content-Security-Policy forbids eval, so waits use selectors, not functions.
def _wait_status(page: Any, status: str) -> None:
    page.wait_for_selector(f"#channel-status:text-is('{status}')")


def _wait_events(page: Any, n: int, timeout: float = 10_000) -> None:
    page.locator("#events li").nth(n - 1).wait_for(timeout=timeout)


def _events(page: Any) -> list[tuple[str, str]]:
    """The events the demo page shows: (id, data) each."""
    items = page.eval_on_selector_all("#events li", "els => els.map(e => [e.dataset.id, "
                                                    "e.dataset.data])")
    return [(i, d) for i, d in items]


CROSS_ORIGIN_PAGE = """<!doctype html><html><body><script>
const relay = "http://127.0.0.1:RELAY_PORT";
window.result = {tokens: "", events: [], error: null, done: false};
(async () => {
  try {
    const r = await fetch(relay + "/v1/chat/completions", {method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify({model: "m", stream: true, max_tokens: 6, messages: []})});
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) { const {value, done} = await reader.read(); if (done) break;
      buf += dec.decode(value, {stream: true}); }
    for (const line of buf.split("\\n")) if (line.startsWith("data: {")) {
      result.tokens += JSON.parse(line.slice(6)).choices[0].delta.content || ""; }
  } catch (e) { result.error = String(e); }
  result.done = true;
})();
const source = new EventSource(relay + "/events/cross");
source.onopen = () => { result.open = true; };
source.onmessage = (e) => result.events.push(e.data);
source.onerror = () => { result.sourceError = true; };
</script></body></html>"""


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A web server on another port: another origin than the relay's."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def _open_cross_origin(browser: Any, origin: str, root: Path, relay_port: int) -> Any:
    (root / "page.html").write_text(CROSS_ORIGIN_PAGE.replace("RELAY_PORT", str(relay_port)))
    page = browser.new_page()
    page.goto(f"{origin}/page.html")
    return page


def test_another_origin_allowed_by_cors_streams_and_subscribes(
        browser: Any, other_origin: tuple[str, Path], mock_server: MockServer,
        make_relay: RelayFactory) -> None:
    origin, root = other_origin
    relay = make_relay(mock_server.url, cors_origins=(origin,))
    page = _open_cross_origin(browser, origin, root, relay.port)
    page.wait_for_function("window.result.done && window.result.open", timeout=20_000)
    publish(relay.port, "cross", "pushed")
    page.wait_for_function("window.result.events.length === 1")
    result = page.evaluate("window.result")
    assert result["error"] is None and result["tokens"] == completion_text(6)
    assert result["events"] == ["pushed"]


def test_another_origin_not_allowed_gets_nothing_and_nothing_goes_upstream(
        browser: Any, other_origin: tuple[str, Path], mock_server: MockServer,
        make_relay: RelayFactory) -> None:
    origin, root = other_origin
    relay = make_relay(mock_server.url)  # no --cors-origin
    page = _open_cross_origin(browser, origin, root, relay.port)
    page.wait_for_function("window.result.done && window.result.sourceError", timeout=20_000)
    # and the simple request a page may send without asking first: refused too
    page.evaluate(f"""fetch('http://127.0.0.1:{relay.port}/v1/chat/completions',
        {{method: 'POST', mode: 'no-cors', body: '{{"stream": true}}'}}).catch(() => null)""")
    result = page.evaluate("window.result")
    assert result["error"] is not None and result["tokens"] == ""
    assert not result.get("open") and result["events"] == []
    client = H11Client(connect(relay.port))  # after the page's requests were answered...
    client.send(b"GET", b"/healthz")
    assert client.read_reply().status == 200
    assert mock_server.mock.requests == 0  # ...none of them reached the upstream


def test_an_img_on_another_page_never_reaches_the_upstream(
        browser: Any, other_origin: tuple[str, Path], mock_server: MockServer,
        make_relay: RelayFactory) -> None:
    """<img src=".../v1/models"> on another origin: a no-cors GET with no Origin, which
    Chromium marks Sec-Fetch-Site (same-site here: another port of 127.0.0.1). Refused, three
    times; the relay saw each one and none reached the upstream."""
    origin, root = other_origin
    relay = make_relay(mock_server.url)
    (root / "img.html").write_text("<!doctype html><html><body></body></html>")
    page = browser.new_page()
    page.goto(f"{origin}/img.html")
    for n in range(3):
        page.evaluate(f"""new Promise(done => {{ const img = new Image();
            img.onload = img.onerror = done;
            img.src = 'http://127.0.0.1:{relay.port}/v1/models?n={n}'; }})""")
    refused = {k: v for k, v in scrape(relay.port).items()
               if k.startswith("relay_requests_total") and 'status="403"' in k}
    assert sum(refused.values()) == 3, refused
    assert mock_server.mock.requests == 0


def test_an_event_source_outlives_a_restart_of_the_relay(browser: Any,
                                                         redis_server: RedisServer) -> None:
    """The page's EventSource is on relay A. A is stopped (it ends the stream cleanly, so the
    EventSource keeps reconnecting); events are published on B meanwhile; A starts again on the
    same port; the EventSource comes back with its Last-Event-ID and gets exactly the events
    it missed, once each, then the live ones."""
    args = ("--redis", redis_server.url, "--access-log", "off", "--channel-retry", "600")
    with spawn("serve", "--port", "0", *args) as (_b, port_b, _):
        page = browser.new_page()
        with spawn("serve", "--port", "0", *args) as (relay_a, port_a, _):
            page.goto(f"http://127.0.0.1:{port_a}/")
            _wait_status(page, "open")
            publish(port_a, "demo", "before")
            _wait_events(page, 1)
        assert relay_a.returncode is not None  # stopped
        _wait_status(page, "reconnecting")
        missed = [json.loads(publish(port_b, "demo", f"missed {i}").body)["id"]
                  for i in range(3)]
        with spawn("serve", "--port", str(port_a), *args):
            _wait_events(page, 4, timeout=20_000)
            publish(port_a, "demo", "after")
            _wait_events(page, 5)
            items = _events(page)
    assert [text for _, text in items] == ["before", "missed 0", "missed 1", "missed 2",
                                           "after"]
    assert [event_id for event_id, _ in items[1:4]] == missed


def _wait_text(page: Any, selector: str, ok: Callable[[str], bool], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = page.inner_text(selector)
        if ok(text):
            return str(text)
        page.wait_for_timeout(20)  # (the page's CSP forbids eval: no wait_for_function)
    raise AssertionError(f"{selector}: {page.inner_text(selector)!r}")


def test_the_demo_page_resumes_a_stream_cut_in_the_network_path(
        browser: Any, lt: LoopThread, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_delay_ms=60)
    cutter: Cutter = lt.run(Cutter(relay.port).start())  # the page talks to the relay via it
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{cutter.port}/")
        page.click("#send")
        _wait_text(page, "#answer", lambda t: len(t) > 10)  # a few tokens in
        lt.call(cutter.cut)
        page.wait_for_selector('#answer[data-done="1"]', timeout=20_000)
        assert page.inner_text("#answer") == completion_text(16)  # nothing lost or repeated
        assert page.inner_text("#chat-status") == "done"
        assert page.inner_text("#resumes") == "1"
        assert scrape(relay.port)["relay_resumable_streams_resumed_total"] == 1
    finally:
        lt.call(cutter.close)


def test_the_demo_pages_stop_button_cancels_the_generation(
        browser: Any, make_relay: RelayFactory) -> None:
    relay = make_relay(mock_delay_ms=60)
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{relay.port}/")
    page.click("#send")
    _wait_text(page, "#answer", lambda t: len(t) > 5)
    page.click("#stop")
    page.wait_for_selector('#answer[data-done="1"]', timeout=20_000)
    assert page.inner_text("#chat-status") == "stopped"  # (it said "error: ..." for a Stop)
    assert len(page.inner_text("#answer")) < len(completion_text(16))
    assert scrape(relay.port)["relay_resumable_streams_cancelled_total"] == 1


def test_the_demo_page_names_its_icon_so_no_favicon_ico_is_asked_for(
        browser: Any, make_relay: RelayFactory, tmp_path: Path) -> None:
    """A browser asks for /favicon.ico unless the page names an icon: a 404 in the console of
    every newcomer. The page links /favicon.svg (allowed by its CSP: img-src 'self')."""
    log = tmp_path / "access.log"
    relay = make_relay(access_log=str(log))
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"http://127.0.0.1:{relay.port}/")
    _wait_status(page, "open")

    def paths() -> list[tuple[str, int]]:
        text = log.read_text() if log.exists() else ""
        return [(d["path"], d["status"]) for d in map(json.loads, text.splitlines())]

    deadline = time.monotonic() + 10
    while ("/favicon.svg", 200) not in paths() and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert ("/favicon.svg", 200) in paths()
    assert not [p for p, status in paths() if p == "/favicon.ico" or status >= 400]
    assert errors == []
    icon = H11Client(connect(relay.port))
    icon.send(b"GET", b"/favicon.svg")
    reply = icon.read_reply()
    assert reply.headers[b"content-type"] == b"image/svg+xml" and reply.body.startswith(b"<svg")


def test_the_raw_bytes_toggle_shows_each_read_as_it_came(
        browser: Any, make_relay: RelayFactory, tmp_path: Path) -> None:
    """For learners: with the toggle on, one row per read of the stream, its bytes decoded with
    \\r and \\n shown, so the events, their id: lines and the reads they came in are visible."""
    relay = make_relay(mock_delay_ms=40)
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{relay.port}/")
    assert not page.is_visible("#raw")  # off by default
    page.check("#raw-toggle")
    page.click("#send")
    page.locator("#raw li code").first.wait_for(timeout=10_000)
    page.wait_for_selector('#answer[data-done="1"]', timeout=20_000)
    rows = page.eval_on_selector_all("#raw li code", "els => els.map(e => e.textContent)")
    assert len(rows) == int(page.inner_text("#reads")) >= 10  # one row per read
    joined = "".join(rows).replace("\\n\n", "\\n")  # (each \\n shown ends a line)
    assert "data: {" in joined and "id: 1\\n" in joined and "data: [DONE]\\n" in joined
    assert "\n" not in joined.replace("\\n", "")  # every line end is shown, none hidden
    assert page.inner_text("#raw li .read").startswith("read 1 · ")
    page.screenshot(path=str(tmp_path / "demo-raw.png"), full_page=True)  # (kept out of the repo)
