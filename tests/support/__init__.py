"""What the tests share: the loop thread, the one scripted upstream, the one fake transport, a
fake clock, the one TLS setup, client helpers, subprocess helpers, and an event-stream parser
used as the oracle of what a client parses."""

from .client import (
    OPEN_SOCKETS,
    EventStream,
    H11Client,
    Reply,
    chat_body,
    connect,
    publish,
    read_until_close,
    recv_until,
    scrape,
    sse_data,
)
from .clock import FakeLoop
from .loop import LoopThread, require_tool, wait_until
from .ports import free_port, unaccepting_port
from .transport import FakeTransport
from .upstream import (
    OK_JSON,
    SSE_HEAD,
    Received,
    Script,
    ScriptedUpstream,
    UpstreamConn,
    answering,
    chunked,
)

__all__ = [
    "OK_JSON",
    "OPEN_SOCKETS",
    "SSE_HEAD",
    "EventStream",
    "FakeLoop",
    "FakeTransport",
    "H11Client",
    "LoopThread",
    "Received",
    "Reply",
    "Script",
    "ScriptedUpstream",
    "UpstreamConn",
    "answering",
    "chat_body",
    "chunked",
    "connect",
    "free_port",
    "publish",
    "read_until_close",
    "recv_until",
    "require_tool",
    "scrape",
    "sse_data",
    "unaccepting_port",
    "wait_until",
]
