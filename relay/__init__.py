"""relay: a byte-exact, backpressured relay for OpenAI-style Server-Sent Events streams."""

__version__ = "0.1.0"
