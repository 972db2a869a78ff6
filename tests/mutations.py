"""Break the relay on purpose and show that the tests notice: ``python -m tests.mutations``.

Each mutation is one small edit of the source that reintroduces a bug a relay can have (or had):
pooling a connection that must not be reused, dropping TCP_NODELAY, a keep-alive timeout ten
times too long, a heartbeat inside an event, an upstream left running after its client left...
For each, a copy of the project gets the edit and the tests that should catch it run on the
copy; the mutation must make them fail. A mutation whose source line is no longer found fails
the check too, so the list keeps up with the code. Run by ``make test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # under relay/
    old: str
    new: str
    tests: tuple[str, ...]  # under tests/; at least one must fail


MUTATIONS = [
    Mutation("pool a response that said Connection: close (or HTTP/1.0)", "net/upstream.py",
             "self._reusable = keep_alive and not isinstance(reader, CloseReader)",
             "self._reusable = not isinstance(reader, CloseReader)",
             ("net/test_upstream.py", "net/test_pool.py")),
    Mutation("pool a connection with bytes left after the body", "net/upstream.py",
             "if self._reusable and not reader.trailing and not self.transport.is_closing():",
             "if self._reusable and not self.transport.is_closing():",
             ("net/test_upstream.py", "net/test_pool.py")),
    Mutation("make the TCP_NODELAY helper a no-op", "net/sockets.py",
             "sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)", "pass",
             ("net/test_sockets.py",)),
    Mutation("make the keep-alive timeout ten times longer", "net/client.py",
             '    attrgetter("keepalive"),  # AWAIT_HEAD: idle',
             "    lambda t: t.keepalive * 10,  # AWAIT_HEAD: idle",
             ("net/test_client.py",)),
    Mutation("send a heartbeat whatever the event boundary", "proxy.py",
             "if conn is None or not conn.at_event_boundary():\n            return False",
             "if conn is None:\n            return False",
             ("test_proxy.py",)),
    Mutation("keep the upstream running when the client leaves", "proxy.py",
             'if self._finish("client_disconnect"):\n            self._close_upstream()',
             'if self._finish("client_disconnect"):\n            pass',
             ("test_proxy.py", "e2e/test_faults.py")),
    Mutation("ignore the client's backpressure", "proxy.py",
             "self._conn.pause_reads()", "pass",
             ("e2e/test_backpressure.py", "ops/test_observer.py")),
    Mutation("let every request head through unchecked", "http1/request_head.py",
             "    rejection = _check_bytes(head) or _check_sizes(head, limits)\n",
             "    return None\n    rejection = _check_bytes(head) or _check_sizes(head, limits)\n",
             ("http1/test_request_head.py",)),
    Mutation("end a torn event's stream without separating the error event", "proxy.py",
             'ex.write(b"\\n\\n")  # end the torn event first',
             'ex.write(b"")  # end the torn event first',
             ("test_proxy.py",)),
    Mutation("route on the raw target (dot segments escape /v1)", "http1/known_heads.py",
             "normalized = normalize_target(target)",
             "normalized = (target.partition(b'?')[0], b'')",
             ("test_router.py",)),
    Mutation("let any web origin spend the key", "guard.py",
             "if origin is not None and not self.origin_allowed(",
             "if False and not self.origin_allowed(",
             ("test_guard.py",)),
    Mutation("answer any Host (DNS rebinding)", "guard.py",
             "return is_loopback(name) or name in self._hosts",
             "return True",
             ("test_guard.py",)),
    Mutation("take the next request while the answers pile up", "net/client.py",
             "if self.flow.paused:  # our answers are not read yet",
             "if False:  # our answers are not read yet",
             ("net/test_client.py", "e2e/test_backpressure.py")),
    Mutation("send on a connection the upstream already closed", "proxy.py",
             "if conn.is_available() or self._ended:",
             "if True:",
             ("e2e/test_faults.py",)),
    Mutation("parse the bytes after a request that said close", "net/client.py",
             "self._enter(ANSWERING if head.keep_alive else CLOSING)",
             "self._enter(ANSWERING)",
             ("net/test_client.py",)),
    Mutation("let a chunk size of 2^64-1 through", "http1/chunks.py",
             "if self._total > self._limit:", "if False:",
             ("http1/test_request_body.py",)),
    Mutation("print the injected key in --trace", "ops/trace.py",
             "for piece in _LINE.findall(seen.feed(data)):", "for piece in _LINE.findall(data):",
             ("ops/test_trace.py",)),
    Mutation("replay a subscriber before registering it for live events",
             "channels/endpoints.py",
             "        self.broker.hub.add(sub)  # live events first; the replay follows; none "
             """is lost
        try:
            replay = await self.broker.replay(
                channel, None if given is None else parse_id(given), given is not None)""",
             """        try:
            replay = await self.broker.replay(
                channel, None if given is None else parse_id(given), given is not None)
            self.broker.hub.add(sub)""",
             ("channels/test_endpoints.py", "channels/test_redis_broker.py")),
    Mutation("deliver a whole fan-out in one turn of the loop", "channels/hub.py",
             "budget, jobs, clock = self._limits.slice, self._jobs, self._clock",
             "budget, jobs, clock = 1 << 30, self._jobs, self._clock",
             ("channels/test_hub.py",)),
    Mutation("take the fast path right after a catch-up (a repeat still on its way goes out)",
             "channels/subscriber.py",
             "self._settled = self.last is None  # (nothing sent yet: nothing to repeat)",
             "self._settled = True",
             ("channels/test_subscriber.py",)),
    Mutation("let a slice run past its time (256 slow writes hold the loop)", "channels/hub.py",
             "            if clock() >= until:\n                break",
             "            if False:\n                break",
             ("channels/test_hub.py",)),
    Mutation("reuse what a chunked request's head said (h11 must decode its body)",
             "http1/known_heads.py",
             "if parsed.chunked or len(head) > self._max_head",
             "if len(head) > self._max_head",
             ("net/test_client_fuzz.py", "http1/test_known_heads.py")),
    Mutation("fire a re-armed timer at its old, earlier time", "net/deadlines.py",
             "if self._clock.time() < self._deadline:  # re-armed since: later",
             "if False:",
             ("net/test_deadlines.py", "net/test_client.py")),
    Mutation("never drop a slow subscriber", "channels/hub.py",
             "        self.stats.dropped += 1\n        sub.cut()",
             "        self.stats.dropped += 1",
             ("channels/test_hub.py", "channels/test_endpoints.py")),
    Mutation("forward CORS preflights upstream", "router.py",
             '    if cors is not None and method == b"OPTIONS" and header(',
             '    if False and cors is not None and method == b"OPTIONS" and header(',
             ("test_cors.py",)),
    Mutation("treat a cut event stream as complete", "proxy.py",
             "if self._sse and self._eof_framed and conn is not None \\\n"
             "                and not ends_with_done(conn.payload_tail()):",
             "if self._sse and self._eof_framed and conn is not None \\\n"
             "                and not conn.payload_tail():",
             ("net/test_upstream.py", "test_proxy.py")),
    Mutation("stop a resumable generation when its client leaves", "streams/stream.py",
             'def on_client_gone(self) -> None:\n        self._leave("client_disconnect")',
             'def on_client_gone(self) -> None:\n        self._leave("client_disconnect")\n'
             '        self.stream.end("gone", "cancelled")',
             ("streams/test_endpoints.py",)),
    Mutation("take a CR LF as two line ends when numbering events", "streams/numbering.py",
             '_BLANK = re.compile(rb"(?>\\r\\n|\\n|\\r)(?>\\r\\n|\\n|\\r)")',
             '_BLANK = re.compile(rb"(?:\\r\\n|\\n|\\r)(?:\\r\\n|\\n|\\r)")',
             ("streams/test_numbering.py",)),
    Mutation("never stop an orphaned generation", "streams/registry.py",
             "            self._arm(stream.id, self.limits.orphan_timeout, self._orphaned)",
             "            pass",
             ("streams/test_registry.py", "streams/test_endpoints.py")),
    Mutation("cancel without closing the upstream", "streams/stream.py",
             "            else:\n                stop()", "            else:\n                pass",
             ("streams/test_endpoints.py",)),
    Mutation("let any token resume any stream", "auth.py",
             "        return hmac.compare_digest(a, b)", "        return True",
             ("streams/test_endpoints.py",)),
    Mutation("lose the access-log lines still waiting when the relay stops", "ops/access_log.py",
             '(never stderr)."""\n        self.flush()', '(never stderr)."""',
             ("ops/test_access_log.py",)),
    Mutation("answer 200 to a reader that has all of an ended stream", "streams/endpoints.py",
             "        if not stream.live and pos >= len(stream.events):", "        if False:",
             ("streams/test_endpoints.py",)),
    Mutation("read on while a pipelined request waits behind an answer (no pause)",
             "net/client.py", "if self.state is ANSWERING and reader.pending:",
             "if False:", ("net/test_client.py",)),
    Mutation("forget an EOF that came behind a request", "http1/request_reader.py",
             "return PAUSED if self._buf else CLOSED if self._eof else NEED_DATA",
             "return PAUSED if self._buf else NEED_DATA",
             ("net/test_client.py", "http1/test_request_reader.py")),
    Mutation("keep a connection alive after a request that said close", "http1/headers.py",
             '    return (http_version == b"1.1" and b"close" not in connection_tokens(items)',
             '    return (http_version == b"1.1"', ("http1/test_headers.py",
                                                    "net/test_client.py")),
    Mutation("answer directly a request with more bytes behind it in its read",
             "http1/request_reader.py", "known and self._lone and not self._buf",
             "known and self._lone", ("net/test_client.py", "http1/test_request_reader.py")),
    Mutation("publish directly without the publish token", "channels/endpoints.py",
             "                or not (self._publish_open or self._publish_check.allows(",
             "                or not (True or self._publish_check.allows(", ("test_router.py",)),
    Mutation("hold no request body in --max-body-memory (a direct answer's included)",
             "net/client.py",
             "if reader.received > hold.held and not hold.take(reader.received - hold.held):",
             "if False:", ("test_router.py", "net/test_budget.py")),
    Mutation("write a resume's catch-up by a count of events, not by bytes", "streams/stream.py",
             "            end = pos + 1 if pos + 1 == len(events) else slice_end(events, pos)",
             "            end = min(len(events), pos + 64)", ("streams/test_memory.py",)),
    Mutation("leave a forgotten stream's readers holding its events", "streams/registry.py",
             "                follower.evict(gone, code)", "                pass",
             ("streams/test_memory.py",)),
    Mutation("leave what the numberer holds back out of --resume-memory", "streams/stream.py",
             "        size += numberer.held  # (an event that never ends counts too)",
             "        pass", ("streams/test_memory.py",)),
    Mutation("redact each read of the trace alone (a credential split across reads)",
             "ops/trace.py", "self._tracer.show(self._id, self._in, data, self._seen)",
             "self._tracer.show(self._id, self._in, data, Redactor())", ("ops/test_trace.py",)),
    Mutation("let a request skip the Sec-Fetch-Site check (route)",
             "router.py", 'header(b"host"), origin, header(b"sec-fetch-site"), method, path)',
             'header(b"host"), origin, None, method, path)', ("test_guard.py",)),
    Mutation("the fast path without the guard (Router._plan: a known head's publish answered "
             "whatever its route, a foreign Host or Origin's too)", "router.py",
             "self._channels.direct_channel(head) if taken.way is Way.CHANNELS",
             "self._channels.direct_channel(head) if True", ("test_router.py",)),
    Mutation("let a no-Origin cross-site request (an <img>) spend the key", "guard.py",
             "if (origin is None and fetch_site is not None",
             "if (False and fetch_site is not None", ("test_guard.py",)),
    Mutation("read an Origin's userinfo as nothing (evil@app.example is app.example)", "cors.py",
             "if match is None or match[2] is not None:", "if match is None:",
             ("test_guard.py", "test_cors.py")),
    Mutation("count received bytes -> declared (reserve a body's declared Content-Length)",
             "http1/request_reader.py",
             "self.received += min(len(buf), body.left)",
             "self.received += body.left",
             ("net/test_budget.py",)),
    Mutation("no total deadline for a trickled request body (only the silence)",
             "net/client.py",
             "self._body_deadline = now + (self._timeouts.request_body_deadline or math.inf)",
             "self._body_deadline = math.inf", ("net/test_client.py",)),
    Mutation("refuse a request before routing without its access-log line", "net/exchange.py",
             "        refusals.refused(request, rejection, peer)", "        pass",
             ("test_router.py",)),
    Mutation("log h11's words for a refusal (they quote the header line)", "http1/request_head.py",
             'reason="malformed request (h11)")', 'reason="")', ("test_router.py",)),
    Mutation("reset without the held events (Redis)", "channels/redis_broker.py",
             "            entries = await self._read_all(stream)", "            pass",
             ("channels/test_redis_broker.py",)),
    Mutation("cap a channel's history by count only (ignore its bytes)", "channels/history.py",
             "while len(events) > limits.history or self.bytes > limits.history_bytes:",
             "while len(events) > limits.history:",
             ("channels/test_history.py", "channels/test_limits.py")),
    Mutation("no cap on all channels' bytes together", "channels/history.py",
             "        if self.bytes > self._limits.memory:\n            self._shed()",
             "        if False:\n            self._shed()",
             ("channels/test_history.py", "channels/test_limits.py")),
    Mutation("number a channel afresh when its history is new (ids repeat after an eviction)",
             "channels/history.py", "key = self._last = next_key(self._last, now)",
             "key = self._last = next_key(self._last if len(history) else None, now)",
             ("channels/test_history.py",)),
    Mutation("let Redis number each Stream alone (ids repeat after an eviction)",
             "channels/redis_broker.py", "string.format('%d-%d', ms, seq)", "'*'",
             ("channels/test_redis_broker.py",)),
    Mutation("check an event's data only, not its name", "channels/endpoints.py",
             "            size += len(event.encode())", "            event.encode()",
             ("channels/test_limits.py",)),
    Mutation("let publishers send the relay's own event names", "channels/endpoints.py",
             "if event is not None and event.startswith(RESERVED):", "if False:",
             ("channels/test_limits.py",)),
    Mutation("hold each piece of a body as its own object (a 1-byte chunk costs ~85 bytes)",
             "http1/request_body.py", "            self._buf += data",
             "            self._buf += data\n"
             "            globals().setdefault('_kept', []).append(data)",
             ("net/test_budget.py",)),
    Mutation("end a trace's secret value at a '#' (the relay's parse_qs does not)",
             "ops/trace.py", '_SECRET_STOP = re.compile(rb"[& \\t\\r\\n]")',
             '_SECRET_STOP = re.compile(rb"[&# \\t\\r\\n]")', ("ops/test_trace.py",)),
    Mutation("take a ';' in a trace's plain value as part of it (an upstream's parameter)",
             "ops/trace.py", '_VALUE_STOP = re.compile(rb"[&; \\t\\r\\n]")',
             '_VALUE_STOP = re.compile(rb"[& \\t\\r\\n]")', ("ops/test_trace.py",)),
    Mutation("write an event bigger than a slice whole (a reader keeps all of it alive)",
             "streams/stream.py", "if self.off or len(events[pos]) > _SLICE:", "if self.off:",
             ("streams/test_memory.py",)),
    Mutation("end a reader cleanly in the middle of an event (the error read as its data)",
             "streams/stream.py", "        if self._ex.open and self.off:",
             "        if False:", ("streams/test_memory.py",)),
    Mutation("hold a mirror's events uncounted (Redis: another instance's streams)",
             "streams/redis_store.py", "        mirror._hold(size)", "        pass",
             ("streams/test_memory.py",)),
    Mutation("close a refused connection at once (a reset loses the client's 413/503)",
             "net/exchange.py", "    if not transport.can_write_eof():",
             "    if True:", ("net/test_client.py", "net/test_budget.py")),
    Mutation("count no bytes for a run of the fan-out's own writes (a subscriber's log line)",
             "channels/subscriber.py", "            self.sent += size - size0", "            pass",
             ("channels/test_endpoints.py", "channels/test_subscriber.py")),
    Mutation("leave the channel's mark after the fast write (a write that pauses loses one)",
             "channels/hub.py",
             "                sub.mark = mark  # (first: a write that pauses the client ends the "
             "fast run)\n                sub.write(framed)",
             "                sub.write(framed)\n                sub.mark = mark",
             ("channels/test_subscriber.py",)),
    Mutation("stop a run of fast writes without counting it (a pause)",
             "channels/subscriber.py", "    def on_client_paused(self) -> None:\n"
             "        self._set_fast(False)",
             "    def on_client_paused(self) -> None:\n        self.fast = False",
             ("channels/test_subscriber.py",)),
    Mutation("count no events for a resumed reader's writes (its log line)", "streams/stream.py",
             "            self.events += end - pos", "            pass",
             ("streams/test_endpoints.py",)),
    Mutation("observe an upstream connect as 0 s (what uvloop's millisecond clock gave)",
             "net/pool.py", "self.connect_seconds.observe(time.perf_counter() - started)",
             "self.connect_seconds.observe(self.loop.time() - self.loop.time())",
             ("ops/test_observer.py",)),
    Mutation("forget that a channel's history dropped an event (0-0 replays in part, silently)",
             "channels/history.py",
             "+ OVERHEAD  # (drop_oldest: inline)\n            self.lost = True",
             "+ OVERHEAD  # (drop_oldest: inline)", ("channels/test_broker.py",)),
    Mutation("Redis: forget that a channel's Stream dropped an entry (0-0 replays in part)",
             "channels/redis_broker.py", "  redis.call('HSET', lost, ch, 1)\n", "",
             ("channels/test_redis_broker.py",)),
    Mutation("demo page: show a Stop the user asked for as an error", "web/demo.js",
             'const stopped = state.stopped && doc.error.code === "cancelled";',
             "const stopped = false;", ("web/test_demo.py",)),
    Mutation("let the Redis writer loop on after a close (a cancel absorbed: close() hangs)",
             "streams/redis_writer.py", "        while not self._closing:  # (checked too",
             "        while True:  # (checked too",
             ("streams/test_redis_store.py::test_close_ends_the_writer_even_when_a_cancel_is_"
              "absorbed",)),
    Mutation("close the link without marking it closing (a cancel absorbed: it reads on)",
             "redis_link.py", "        self._closing = True\n        self.connected.clear()\n",
             "        self.connected.clear()\n",
             ("test_redis_link.py::test_close_ends_the_reader_even_when_a_cancel_is_absorbed",)),
    Mutation("answer /healthz ok whatever Redis does (a load balancer keeps sending)",
             "local.py", 'if path == b"/healthz" and (broken := self.broken()):',
             'if path == b"/healthz" and (broken := None):',
             ("channels/test_redis_broker.py::test_healthz_says_503_while_redis_is_unreachable_"
              "and_ok_once_it_is_back",)),
    Mutation("type the relay's own 503s invalid_request_error (a client's mistake)",
             "errors.py",
             'return "server_error" if status >= 500 and status not in _ASKED_WRONG else (',
             'return "invalid_request_error" if status else (',
             ("net/test_client.py::test_over_the_connection_cap_gets_503_with_retry_after",)),
    Mutation("take a negative port (the kernel's 'Servname not supported')", "cli.py",
             "if not 0 <= value <= 65535:", "if not -65536 <= value <= 65535:",
             ("test_cli.py::test_every_port_duration_and_size_refuses_a_bad_value",)),
    Mutation("take a negative size (--max-body-size -1 was accepted)", "cli.py",
             "    if value < 0:", "    if value < -1:",
             ("test_cli.py::test_the_issues_bad_numbers_are_refused",)),
    Mutation("ignore a second signal during the drain", "app.py",
             "second = asyncio.ensure_future(signals.next())",
             "second = asyncio.ensure_future(asyncio.Event().wait())",
             ("e2e/test_drain.py::test_a_second_signal_during_the_drain_ends_the_process_at"
              "_once",)),
    Mutation("keep a second signal from the workers (the supervisor waits out the drain)",
             "ops/workers.py", "                    proc.send_signal(signal.SIGTERM)",
             "                    pass",
             ("ops/test_workers.py::test_a_second_signal_to_the_supervisor_ends_the_workers"
              "_at_once",)),
    Mutation("count a worker's SIGINT (a Ctrl-C to the group cuts instead of draining)",
             "app.py", "        if worker:", "        if False:",
             ("ops/test_workers.py::test_a_second_signal_to_the_supervisor_ends_the_workers"
              "_at_once",)),
    Mutation("count a mirror's read of Redis that came back after it was let go",
             "streams/redis_store.py",
             " or not mirror.live or self._mirrors.get(mirror.id) is not mirror:",
             " or not mirror.live:", ("streams/test_mirror.py",)),
    Mutation("stop a generation here before letting go of mirrors",
             "streams/redis_store.py",
             "        for mirror in sorted(self._mirrors.values(), key=lambda m: m.live):",
             "        for mirror in []:",
             ("streams/test_mirror.py",)),
    Mutation("tell a draining reader to resume in the middle of an event", "streams/stream.py",
             "        if self.off:\n            self._resume = event_at",
             "        if False:\n            self._resume = event_at", ("streams/test_stream.py",)),
    Mutation("give a one-piece body as h11's bytearray", "http1/request_body.py",
             "body = bytes(self._first) if self._first", "body = self._first if self._first",
             ("http1/test_request_body.py",)),
    Mutation("orphan a stream another instance reads (the registry skips its store)",
             "streams/registry.py",
             "        if stream.live and not self.store.read_elsewhere(stream):",
             "        if stream.live:",
             ("streams/test_registry.py", "streams/test_redis_store.py")),
    Mutation("the supervisor keeps its banner once printed (a second SIGUSR1 prints it again)",
             "ops/workers.py", "        banner, self._banner = self._banner, None\n",
             "        banner = self._banner\n", ("ops/test_workers.py",)),
    Mutation("take a chunk size with a leading 0 in the chunk scanner's tight loop (the last "
             "chunk as an empty one, 0x1f as 31)", "http1/chunks.py",
             "if not line.isalnum() or line[0] == 48:", "if not line.isalnum():",
             ("http1/test_chunks.py",)),
    Mutation("let a whole chunk-size line be longer than a cut one may", "http1/chunks.py",
             "        if eol - pos > MAX_CHUNK_LINE:\n            raise FramingError(LONG_LINE)\n"
             "        line = data[pos:eol]",
             "        line = data[pos:eol]", ("http1/test_chunks.py",)),
    Mutation("forget the payload before a short chunk in a framed body's tail", "http1/chunks.py",
             "if start < pos != short_end:", "if False:", ("http1/test_chunks.py",)),
]


def _copy_project(into: Path) -> None:
    for name in ("relay", "tests", "docs"):
        shutil.copytree(ROOT / name, into / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, into / name)


def _env(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    env["PYTHONPATH"] = str(copy)  # the copy's relay, not the installed (editable) one
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(mutation: Mutation) -> tuple[Mutation, str, float]:
    """Apply ``mutation`` to a copy and run its tests: ("caught" | "SURVIVED" | "STALE")."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-mutant-") as tmp:
        copy = Path(tmp)
        _copy_project(copy)
        target = copy / "relay" / mutation.path
        source = target.read_text()
        if source.count(mutation.old) != 1:
            return mutation, "STALE", time.monotonic() - started
        target.write_text(source.replace(mutation.old, mutation.new))
        env = _env(copy)
        where = subprocess.run([sys.executable, "-c", "import relay; print(relay.__file__)"],
                               cwd=copy, env=env, capture_output=True, text=True, check=True)
        assert where.stdout.startswith(str(copy)), where.stdout
        tests = [f"tests/{t}" for t in mutation.tests]
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "-o", "addopts=", "--timeout=120", *tests],
            cwd=copy, env=env, capture_output=True, text=True)
    verdict = "caught" if result.returncode == 1 else "SURVIVED"
    if result.returncode not in (0, 1):
        verdict = f"ERROR (pytest exit {result.returncode})"
    return mutation, verdict, time.monotonic() - started


def main() -> int:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, MUTATIONS))
    width = max(len(m.name) for m in MUTATIONS)
    print(f"{'mutation':<{width}}  verdict   seconds")
    for mutation, verdict, seconds in results:
        print(f"{mutation.name:<{width}}  {verdict:<8}  {seconds:6.1f}")
    bad = [m.name for m, verdict, _ in results if verdict != "caught"]
    if bad:
        print(f"\n{len(bad)} mutation(s) not caught: {bad}", file=sys.stderr)
        return 1
    print(f"\nall {len(results)} mutations caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
