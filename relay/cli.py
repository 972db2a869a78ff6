"""``relay serve`` and ``relay mock``. Every flag also reads a ``RELAY_*`` environment variable
(named after the flag: ``--first-byte-timeout`` is ``RELAY_FIRST_BYTE_TIMEOUT``); a flag given on
the command line wins over the environment."""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .app import banner, check_startup, run, serve, serve_mock
from .auth import parse_tokens
from .config import (
    ChannelLimits,
    Config,
    Limits,
    Origin,
    ResumeLimits,
    Timeouts,
    api_key_from_env,
    redis_url,
)
from .cors import Cors
from .errors import StartupError, listen_error
from .ops.workers import Supervisor

_T, _L, _C, _R = Timeouts(), Limits(), ChannelLimits(), ResumeLimits()  # --help's defaults


def _env(flag: str, default: Any) -> Any:
    return os.environ.get("RELAY_" + flag.lstrip("-").replace("-", "_").upper(), default)


def _add(p: argparse.ArgumentParser, flag: str, default: Any, help: str, **kw: Any) -> None:
    env = "RELAY_" + flag.lstrip("-").replace("-", "_").upper()
    text = f"{help} [env {env}; default %(default)s]"
    p.add_argument(flag, default=_env(flag, default), help=text, **kw)


def seconds(text: str) -> float:
    """A duration flag's value: a number of seconds, never negative."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # (also refuses nan)
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number of seconds >= 0")
    return value


def amount(text: str) -> int:
    """A size or count flag's value (bytes, events, connections, milliseconds): an integer,
    never negative."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= 0")
    return value


def port_number(text: str) -> int:
    """A port flag's value: 0-65535 (0: any free one). Unchecked, the kernel took 99999 modulo
    65536 and asyncio's loop overflowed on it."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a port number, 0-65535")
    return value


def worker_count(text: str) -> int:
    value = amount(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors as the relay's other startup errors: one line on
    stderr naming the cause (no usage block above it), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"relay: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="relay", description="SSE relay for OpenAI-style APIs")
    ap.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the relay")
    _listen_flags(s)
    _timeout_flags(s)
    _limit_flags(s)
    _operating_flags(s)
    _channel_flags(s)
    _resume_flags(s)
    _mock_flags(sub.add_parser("mock", help="run the OpenAI-compatible mock upstream"))
    return ap


def _listen_flags(s: argparse.ArgumentParser) -> None:
    _add(s, "--host", "127.0.0.1", "address to listen on")
    _add(s, "--port", 8080, "port to listen on (0: any free port)", type=port_number)
    _add(s, "--upstream", None, "upstream origin, e.g. https://api.openai.com (default: the mock)")
    _add(s, "--upstream-ca", None, "CA bundle file for a private upstream CA (default: certifi)")
    _add(s, "--api-key-env", "OPENAI_API_KEY", "the environment variable holding the key the "
         "relay injects upstream (unset or empty: clients' own Authorization goes upstream)")
    s.add_argument("--allowed-host", action="append", default=None, metavar="HOST",
                   help="a Host the relay answers besides loopback names (DNS rebinding guard; "
                   "repeatable) [env RELAY_ALLOWED_HOSTS, comma-separated]")
    _add(s, "--loop", "uvloop", "event loop", choices=["uvloop", "asyncio"])
    s.add_argument("--client-token", default=os.environ.get("RELAY_CLIENT_TOKENS", ""),
                   help="bearer token(s) clients must send: 'a,b' or '@file' (one per line); "
                   "off when empty [env RELAY_CLIENT_TOKENS]")


def _timeout_flags(s: argparse.ArgumentParser) -> None:
    _add(s, "--connect-timeout", _T.connect, "seconds to connect upstream", type=seconds)
    _add(s, "--first-byte-timeout", _T.first_byte, "seconds to the response head",
         type=seconds)
    _add(s, "--read-timeout", _T.read, "seconds of upstream silence mid-body", type=seconds)
    _add(s, "--heartbeat", _T.heartbeat, "seconds of stream silence before a heartbeat comment "
         "(0: off)", type=seconds)
    _add(s, "--keepalive-timeout", _T.keepalive, "idle client keep-alive seconds",
         type=seconds)
    _add(s, "--request-head-timeout", _T.request_head, "seconds to receive a request head, "
         "from its first byte (408)", type=seconds)
    _add(s, "--request-body-timeout", _T.request_body, "longest silence inside a request body "
         "(408)", type=seconds)
    _add(s, "--request-body-deadline", _T.request_body_deadline, "seconds to receive a whole "
         "request body, from its first read, however it trickles (408; 0: none)",
         type=seconds)
    _add(s, "--send-timeout", _T.send, "seconds a client may take nothing before it is cut",
         type=seconds)
    _add(s, "--queue-timeout", _T.queue, "seconds to wait for an upstream connection at "
         "--max-upstream (then 503)", type=seconds)


def _limit_flags(s: argparse.ArgumentParser) -> None:
    _add(s, "--max-body-size", _L.max_body_size, "request body bytes (413 above)", type=amount)
    _add(s, "--max-body-memory", _L.max_body_memory, "request body bytes held at once, all "
         "connections together (503 with Retry-After above)", type=amount)
    _add(s, "--max-head-size", _L.max_head_size, "request head bytes (431)", type=amount)
    _add(s, "--max-line-size", _L.max_line_size, "request line (414) or header line (431) "
         "bytes", type=amount)
    _add(s, "--max-headers", _L.max_headers, "request header lines (431)", type=amount)
    _add(s, "--max-connections", _L.max_connections, "open client connections (503 with "
         "Retry-After beyond)", type=amount)
    _add(s, "--max-upstream", _L.max_upstream, "upstream connections open at once (0: no "
         "cap); more requests queue", type=amount)
    _add(s, "--socket-buffer", _L.socket_buffer, "SO_SNDBUF/SO_RCVBUF of client sockets and "
         "SO_SNDBUF upstream (0: kernel autotuning)", type=amount)
    _add(s, "--write-high-water", _L.write_high_water, "client buffer bytes before pausing "
         "upstream reads", type=amount)
    _add(s, "--upstream-rcvbuf", _L.upstream_rcvbuf, "SO_RCVBUF of upstream sockets: caps one "
         "read (0: kernel default)", type=amount)
    _add(s, "--known-heads", _L.known_heads, "request heads of up to 1 KiB kept parsed, by "
         "their bytes, so a repeated head skips parsing (0: parse every head)", type=amount)
    _add(s, "--pool-size", _L.pool_size, "idle upstream connections kept", type=amount)
    _add(s, "--pool-idle-timeout", _L.pool_idle_timeout, "seconds an idle upstream "
         "connection is kept", type=seconds)


def _operating_flags(s: argparse.ArgumentParser) -> None:
    _add(s, "--access-log", "-", "JSON access log: '-' stderr, a file path, or 'off'")
    _add(s, "--admin-port", None, "serve /metrics and /healthz on this port (then /metrics is "
         "off the main port)", type=port_number)
    _add(s, "--drain-timeout", 30.0, "on SIGTERM/SIGINT, seconds in-flight streams may finish "
         "before they are ended", type=seconds)
    _add(s, "--workers", 1, "worker processes sharing the port (SO_REUSEPORT), supervised",
         type=worker_count)
    s.add_argument("--trace", action="store_true", default=_env("--trace", "") == "1",
                   help="print the raw bytes crossing each side, per connection, to stderr "
                   "[env RELAY_TRACE=1]")
    s.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT (set by "
                   "--workers for its workers)")
    s.add_argument("--worker-of", type=amount, default=0, metavar="PID", help="run as a "
                   "worker of the --workers supervisor PID (set by it): no banner, the "
                   "supervisor prints it; SIGINT ignored, the supervisor passes signals on")
    _add(s, "--log-level", "info", "logging level")
    _add(s, "--mock-delay-ms", 30, "with no --upstream: milliseconds between the built-in "
         "mock's events, like a real model (a request's x-mock-delay-ms wins)", type=amount)


def _channel_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--cors-origin", action="append", default=None, metavar="ORIGIN",
                   help="a web origin allowed to call the relay from a browser, e.g. "
                   "https://app.example, or * for any (repeatable or comma-separated) "
                   "[env RELAY_CORS_ORIGINS]")
    s.add_argument("--publish-token", default=os.environ.get("RELAY_PUBLISH_TOKENS", ""),
                   help="bearer token(s) needed to publish to channels: 'a,b' or '@file' "
                   "(default: the relay tokens, if any) [env RELAY_PUBLISH_TOKENS]")
    _add(s, "--redis", None, "share channels and resumable streams through Redis, "
         "redis://host:port/db (needs the relay[redis] extra)")
    _add(s, "--channel-history", _C.history, "events each channel keeps for replay by "
         "Last-Event-ID", type=amount)
    _add(s, "--channel-history-bytes", _C.history_bytes, "bytes of events each channel keeps "
         "(the oldest go first)", type=amount)
    _add(s, "--channels-memory", _C.memory, "bytes of events all channels keep together (the "
         "oldest, of the channel published to least recently, go first)", type=amount)
    _add(s, "--channel-ttl", _C.ttl, "seconds an event stays in a channel's history",
         type=seconds)
    _add(s, "--max-channels", _C.max_channels, "channels with a history (the least recently "
         "used goes first)", type=amount)
    _add(s, "--channel-retry", _C.retry_ms, "EventSource reconnection time in ms (jittered "
         "+-50%% per subscriber)", type=amount)
    _add(s, "--subscriber-buffer", _C.slow_buffer, "a subscriber whose write buffer passes "
         "this many bytes is dropped (it reconnects and replays)", type=amount)
    _add(s, "--subscriber-stall", _C.stall, "a subscriber that takes nothing for this many "
         "seconds is dropped", type=seconds)


def _resume_flags(s: argparse.ArgumentParser) -> None:
    _add(s, "--resume-ttl", _R.ttl, "seconds an ended resumable stream (X-Relay-Resumable: 1) "
         "can still be resumed", type=seconds)
    _add(s, "--resume-orphan-timeout", _R.orphan_timeout, "seconds a resumable stream goes on "
         "generating with nobody reading, before its upstream is closed", type=seconds)
    _add(s, "--resume-max-bytes", _R.max_bytes, "bytes of events one resumable stream may "
         "hold (beyond, it is stopped with a too_large error event)", type=amount)
    _add(s, "--resume-memory", _R.memory, "bytes all resumable streams may hold (beyond, the "
         "oldest ended go first, then new ones get 503)", type=amount)


def _mock_flags(m: argparse.ArgumentParser) -> None:
    _add(m, "--host", "127.0.0.1", "address to listen on")
    _add(m, "--port", 9000, "port to listen on (0: any free port)", type=port_number)
    _add(m, "--tls-cert", None, "serve TLS with this certificate chain (PEM)")
    _add(m, "--tls-key", None, "private key for --tls-cert (PEM)")
    _add(m, "--loop", "uvloop", "event loop", choices=["uvloop", "asyncio"])


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        host=args.host,
        port=int(args.port),
        upstream=Origin.parse(args.upstream) if args.upstream else None,
        upstream_ca=args.upstream_ca,
        api_key=api_key_from_env(args.api_key_env),
        client_tokens=parse_tokens(args.client_token),
        loop=args.loop,
        access_log=args.access_log,
        drain_timeout=float(args.drain_timeout),
        reuse_port=bool(args.reuse_port),
        supervisor=int(args.worker_of),
        trace=bool(args.trace),
        admin_port=None if args.admin_port is None else int(args.admin_port),
        allowed_hosts=_listed(args.allowed_host, "RELAY_ALLOWED_HOSTS"),
        cors_origins=_cors_origins(args.cors_origin),
        publish_tokens=parse_tokens(args.publish_token),
        redis=redis_url(args.redis) if args.redis else None,
        channels=_channel_limits(args),
        resume=ResumeLimits(ttl=float(args.resume_ttl),
                            orphan_timeout=float(args.resume_orphan_timeout),
                            max_bytes=int(args.resume_max_bytes),
                            memory=int(args.resume_memory)),
        mock_delay_ms=int(args.mock_delay_ms),
        timeouts=_timeouts(args),
        limits=_limits(args),
    )


def _listed(given: list[str] | None, env: str) -> tuple[str, ...]:
    """A repeatable flag whose values may also be comma-separated, or its variable."""
    items = given if given is not None else [os.environ.get(env, "")]
    return tuple(v.strip() for item in items for v in item.split(",") if v.strip())


def _cors_origins(given: list[str] | None) -> tuple[str, ...]:
    origins = _listed(given, "RELAY_CORS_ORIGINS")
    Cors(origins)  # (a malformed origin is a clear error at startup)
    return origins


def _channel_limits(args: argparse.Namespace) -> ChannelLimits:
    return ChannelLimits(
        history=int(args.channel_history), ttl=float(args.channel_ttl),
        history_bytes=int(args.channel_history_bytes), memory=int(args.channels_memory),
        max_channels=int(args.max_channels), retry_ms=int(args.channel_retry),
        slow_buffer=int(args.subscriber_buffer), stall=float(args.subscriber_stall),
        heartbeat=float(args.heartbeat) or ChannelLimits().heartbeat,
    )


def _timeouts(args: argparse.Namespace) -> Timeouts:
    return Timeouts(
        connect=float(args.connect_timeout),
        first_byte=float(args.first_byte_timeout),
        read=float(args.read_timeout),
        keepalive=float(args.keepalive_timeout),
        request_head=float(args.request_head_timeout),
        request_body=float(args.request_body_timeout),
        request_body_deadline=float(args.request_body_deadline),
        send=float(args.send_timeout),
        queue=float(args.queue_timeout),
        heartbeat=float(args.heartbeat),
    )


def _limits(args: argparse.Namespace) -> Limits:
    high = int(args.write_high_water)
    return Limits(
        max_head_size=int(args.max_head_size),
        max_body_size=int(args.max_body_size),
        max_body_memory=int(args.max_body_memory),
        max_line_size=int(args.max_line_size),
        max_headers=int(args.max_headers),
        max_connections=int(args.max_connections),
        max_upstream=int(args.max_upstream),
        socket_buffer=int(args.socket_buffer),
        write_high_water=high,
        write_low_water=high // 4,
        upstream_rcvbuf=int(args.upstream_rcvbuf),
        pool_size=int(args.pool_size),
        pool_idle_timeout=float(args.pool_idle_timeout),
        known_heads=int(args.known_heads),
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            _serve(args, argv)
        else:
            _mock(args)
    except StartupError as exc:
        # One clear line and argparse's exit code for bad usage, never a traceback.
        print(f"relay: {exc}", file=sys.stderr)
        sys.exit(2)


def _serve(args: argparse.Namespace, argv: list[str]) -> None:
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as exc:
        raise StartupError(str(exc)) from None
    check_startup(config)
    if int(args.workers) > 1:
        rest = argv[argv.index("serve") + 1:]  # the workers get the same flags (later ones win)
        try:
            n = int(args.workers)
            said = f"; {n} workers, supervisor pid {os.getpid()}"
            supervisor = Supervisor(rest, n, args.host, int(args.port),
                                    lambda port: banner(config, port, workers=said))
        except OSError as exc:
            raise StartupError(listen_error(args.host, int(args.port), exc)) from None
        sys.exit(supervisor.run())
    logging.basicConfig(level=str(args.log_level).upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(serve(config), config.loop)


def _mock(args: argparse.Namespace) -> None:
    ctx = None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise StartupError("--tls-cert and --tls-key go together: give both, or neither")
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    run(serve_mock(args.host, int(args.port), ctx), args.loop)
