"""Peer relays for side-by-side benchmarks (bench tools, not part of the relay)."""
