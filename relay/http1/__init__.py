"""HTTP/1.1 mechanics, sans-IO: plain classes and functions fed bytes, returning bytes or verdicts.

Nothing here imports asyncio, socket or h11 (a test checks it), so every rule can be tested by
feeding bytes, one at a time if need be. Reading order, following a request through the relay:

* :mod:`.request_head`: the strict checks a raw request head passes before h11 parses it;
* :mod:`.messages`: the request and response-head objects handed between the layers;
* :mod:`.headers`: which headers cross each hop (hop-by-hop rules, the injected key);
* :mod:`.readers`: upstream response bodies: length, chunked or close-delimited;
* :mod:`.passthrough`: a chunked body forwarded with its own framing (the hot path);
* :mod:`.writers`: client response heads and bodies: chunked, length, close-delimited;
* :mod:`.sse`: event-stream facts the relay needs (heartbeats, boundaries, encoding).
"""
