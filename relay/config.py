"""Configuration as frozen dataclasses, built from CLI flags and ``RELAY_*`` environment variables.

Nothing here does I/O except reading the environment once in :func:`api_key_from_env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class Origin:
    """The one upstream origin the relay may contact (scheme, host, port; no path).

    The relay is never an open proxy: every upstream request goes to this origin, whatever the
    client's request line or ``Host`` header says.
    """

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"upstream must be an http:// or https:// origin, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"upstream has no host: {url!r}")
        if parts.username or parts.password:
            raise ValueError("upstream URL must not carry credentials; use RELAY_API_KEY_ENV")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"upstream must be an origin without a path, got {url!r}")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, parts.port or default)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> bytes:
        """The ``Host`` value for upstream requests: the port only when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return (host if self.port == default else f"{host}:{self.port}").encode("ascii")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``first_byte`` runs from the request sent to the response head; ``read`` is the
    longest silence allowed between two upstream reads once the head has arrived (it does not run
    while the client's backpressure holds upstream reads paused)."""

    connect: float = 10.0
    first_byte: float = 300.0
    read: float = 300.0
    keepalive: float = 75.0  # idle client connection between requests (nginx's default)
    request_head: float = 60.0  # the whole request head, from its first byte (slowloris; 408)
    request_body: float = 60.0  # longest silence between two reads of a request body (408)
    request_body_deadline: float = 60.0  # a whole request body, from its first read (0: none)
    send: float = 60.0  # a client that takes nothing for this long is cut (nginx send_timeout)
    queue: float = 30.0  # wait for a free upstream connection at max_upstream, then 503
    heartbeat: float = 15.0  # SSE silence before a heartbeat comment goes out (0: never)


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes in bytes and counts. What one stream buffers in user space is bounded by the
    client's ``write_high_water`` plus one upstream read; ``upstream_rcvbuf`` (SO_RCVBUF of the
    upstream sockets, which Linux doubles) bounds that read to about twice its value, instead of
    the 256 KiB uvloop would read at once: ~192 KiB per stream with the defaults."""

    max_head_size: int = 32 * KIB  # nginx: 4 buffers of 8k
    max_line_size: int = 8 * KIB  # request line (414) or one header line (431)
    max_headers: int = 100  # header lines in a request head (431)
    max_body_size: int = 16 * MIB
    max_body_memory: int = 256 * MIB  # request bodies held at once, all connections (503)
    write_high_water: int = 64 * KIB
    write_low_water: int = 16 * KIB
    upstream_rcvbuf: int = 64 * KIB  # 0: the kernel's default (autotuned, up to MiBs)
    pool_size: int = 100  # idle keep-alive upstream connections kept
    pool_idle_timeout: float = 60.0
    max_connections: int = 10_000  # open client connections; beyond: 503 with Retry-After
    max_upstream: int = 0  # upstream connections in use at once (0: no cap, like nginx)
    socket_buffer: int = 0  # SO_SNDBUF/SO_RCVBUF of client sockets (0: the kernel's autotuning)
    known_heads: int = 4096  # request heads (<= 1 KiB) kept parsed per listener (0: none)


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """Pub/sub channels (``/events/{channel}``): how much history each keeps, how subscribers
    are paced and when a slow one is dropped."""

    history: int = 1000  # events kept per channel for replay by Last-Event-ID
    history_bytes: int = 4 * MIB  # and bytes of them (the oldest go first)
    memory: int = 64 * MIB  # bytes of all channels' histories (the oldest events go first)
    ttl: float = 600.0  # seconds an event stays in the history
    max_channels: int = 10_000  # channels with a history; the least recently used goes first
    retry_ms: int = 3000  # the EventSource reconnection time, jittered by +-50% per subscriber
    slow_buffer: int = 512 * KIB  # a subscriber's write buffer over this is dropped
    stall: float = 5.0  # a subscriber that takes nothing for this long is dropped
    heartbeat: float = 15.0  # an idle channel's subscribers get a comment this often
    slice: int = 256  # deliveries per event-loop turn, so a big fan-out never stalls the loop
    slice_time: float = 0.002  # and seconds of them per turn (a write's cost varies by host)

    def __post_init__(self) -> None:
        for flag, value in (("--channel-history", self.history), ("--channel-ttl", self.ttl),
                            ("--channel-history-bytes", self.history_bytes),
                            ("--channels-memory", self.memory),
                            ("--max-channels", self.max_channels)):
            if value < 0:
                raise ValueError(f"{flag} must not be negative, got {value}")


@dataclass(frozen=True, slots=True)
class ResumeLimits:
    """Resumable streams (``X-Relay-Resumable: 1``): how long they are kept, how long a
    generation goes on with nobody reading, and how much memory they may hold."""

    ttl: float = 600.0  # seconds an ended stream stays resumable
    orphan_timeout: float = 60.0  # a live stream nobody reads for this long is stopped
    max_bytes: int = 8 * MIB  # events one stream may hold; beyond, it is stopped (too_large)
    memory: int = 256 * MIB  # all streams together; beyond, new ones get 503


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``relay serve`` needs; ``api_key`` stays out of ``repr`` (so out of logs)."""

    host: str = "127.0.0.1"
    port: int = 8080
    upstream: Origin | None = None
    upstream_ca: str | None = None
    api_key: str | None = field(default=None, repr=False)
    client_tokens: tuple[str, ...] = field(default=(), repr=False)  # relay auth (off when empty)
    loop: str = "uvloop"
    access_log: str = "off"  # "-": stderr, a path: append there, "off": none
    admin_port: int | None = None  # /metrics on its own listener (then off the public port)
    drain_timeout: float = 30.0  # on SIGTERM/SIGINT: seconds in-flight streams may finish
    reuse_port: bool = False  # SO_REUSEPORT (the workers of --workers N share one port)
    supervisor: int = 0  # the pid of the --workers supervisor (0: none): no banner, no SIGINT
    trace: bool = False  # print the raw bytes of every connection (relay/ops/trace.py)
    allowed_hosts: tuple[str, ...] = ()  # Host values served besides loopback names (guard.py)
    cors_origins: tuple[str, ...] = ()  # web origins allowed from browsers (cors.py); "*": any
    publish_tokens: tuple[str, ...] = field(default=(), repr=False)  # for POST /events/...
    redis: str | None = field(default=None, repr=False)  # redis://host:port/db (a password?)
    channels: ChannelLimits = ChannelLimits()
    resume: ResumeLimits = ResumeLimits()
    mock_delay_ms: int = 0  # the embedded mock's pause between events (make run: 30)
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        # The key goes into every upstream request head, which the relay writes itself
        # (relay/http1/writers.py:request_head): a CR, LF or space in it would split the head.
        if self.api_key is not None and not all(0x21 <= ord(c) <= 0x7E for c in self.api_key):
            raise ValueError("the API key holds characters a header value cannot carry "
                             "(spaces, control characters or non-ASCII): check the variable")


REDIS_SCHEMES = ("redis", "rediss", "unix")  # the ones redis-py's from_url reads


def redis_url(url: str) -> str:
    """``--redis``, checked at startup (redis-py would refuse it later, with a traceback). The
    URL may hold a password, so the error never repeats it."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES or not (parts.netloc or parts.path):
        raise ValueError("--redis must be a URL starting with redis://, rediss:// or unix://, "
                         "with a host or a path (e.g. redis://localhost:6379/0)")
    try:
        parts.port  # noqa: B018 (its check: 0-65535, digits only)
    except ValueError:
        raise ValueError("--redis has a bad port: it must be a number, 0-65535") from None
    return url


def api_key_from_env(var_name: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The key named by ``RELAY_API_KEY_ENV`` (default ``OPENAI_API_KEY``), or None when unset."""
    env = os.environ if environ is None else environ
    name = var_name or env.get("RELAY_API_KEY_ENV") or "OPENAI_API_KEY"
    value = env.get(name, "").strip()
    return value or None
