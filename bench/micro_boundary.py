"""Micro-benchmark: the cost of knowing where event boundaries are, per MB relayed.

    .venv/bin/python -m bench.micro_boundary

Two ways the relay can know whether a stream stands between events: feeding every payload
piece to ``BoundaryTracker`` (the decode path, HTTP/1.0 clients), or asking
``tail_between_events`` about the last payload bytes the pass-through scanner keeps anyway
(only when a heartbeat or an error is due). Prints CPU time per MB of ~180-byte events.
"""

from __future__ import annotations

import time

from relay.sse import BoundaryTracker, tail_between_events

EVENT = (b'data: {"choices":[{"index":0,"delta":{"content":" token"}}],"x":"'
         + b"y" * 110 + b'"}\n\n')


def main() -> None:
    mb = 64
    pieces = [EVENT] * (mb * 1024 * 1024 // len(EVENT))
    tracker = BoundaryTracker()
    start = time.process_time()
    for piece in pieces:
        tracker.feed(piece)
    feed = time.process_time() - start
    start = time.process_time()
    for piece in pieces:
        tail_between_events(piece[-4:])
    tail = time.process_time() - start
    print(f"{len(pieces)} events of {len(EVENT)} bytes ({mb} MB)")
    print(f"BoundaryTracker.feed per piece:        {feed / mb * 1000:6.2f} ms per MB "
          f"({feed / len(pieces) * 1e9:.0f} ns per event)")
    print(f"tail_between_events, asked per piece:  {tail / mb * 1000:6.2f} ms per MB "
          f"(the relay asks only when a heartbeat or error is due: ~0 per MB)")


if __name__ == "__main__":
    main()
