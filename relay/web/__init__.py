"""The demo page the relay serves at ``/``: plain HTML and JavaScript, no build step, no CDN.

A chat box streams a completion through ``fetch`` POST and a ``ReadableStream`` (the tokens
appear as they arrive, with the time to the first one), and a panel subscribes to a channel
with ``EventSource`` and publishes to it. The files are read once, at import.
"""

from __future__ import annotations

from importlib.resources import files

_HERE = files(__package__)
PAGES = {
    b"/": (_HERE.joinpath("index.html").read_bytes(), b"text/html; charset=utf-8"),
    b"/demo.js": (_HERE.joinpath("demo.js").read_bytes(), b"text/javascript; charset=utf-8"),
    # (The page links it: without one, a browser asks for /favicon.ico, a 404 in its console.)
    b"/favicon.svg": (_HERE.joinpath("favicon.svg").read_bytes(), b"image/svg+xml"),
}
# The page's own script and styles only, and requests to the relay only: a demo page that
# could load scripts from elsewhere would be a way in.
HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self' "
     b"'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; "
     b"form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]
