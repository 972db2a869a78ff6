"""HTTP/1.1 mechanics, sans-IO: plain classes and functions fed bytes, returning bytes or verdicts.

Nothing here imports asyncio or socket (a test checks it), and h11, sans-IO itself, only the
request reader; so every rule can be tested by feeding bytes, one at a time if need be.
Reading order, following a request through the relay:

* :mod:`.request_reader`: a client's bytes in, request events out (as h11's ``Connection``);
* :mod:`.request_head`: the strict checks a raw request head passes before h11 parses it;
* :mod:`.known_heads`: heads already parsed, by their exact bytes;
* :mod:`.target`: the normalized path (no dot segment leaves ``/v1/``);
* :mod:`.request_body`: a request body, bounded;
* :mod:`.messages`: the request and response-head objects handed between the layers;
* :mod:`.headers`: which headers cross each hop (hop-by-hop rules, the injected key);
* :mod:`.chunks`: the chunked transfer coding, one scanner for the three chunked readers;
* :mod:`.readers`: upstream response bodies: length, chunked or close-delimited;
* :mod:`.passthrough`: a chunked body forwarded with its own framing (the hot path);
* :mod:`.writers`: client response heads and bodies: chunked, length, close-delimited;
* :mod:`.sse`: event-stream facts the relay needs (heartbeats, boundaries, encoding).
"""
