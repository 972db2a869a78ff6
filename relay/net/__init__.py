"""The sockets: one ``asyncio.Protocol`` per socket kind, and the small objects around them.

This is the only package where asyncio transports appear, and h11 is imported by exactly two
modules (a test checks it): :mod:`.client` (the client connection, h11 as a server) and
:mod:`.upstream` (an upstream connection, h11 as a client). Reading order:

* :mod:`.listener`: the listening socket and the registry of client connections;
* :mod:`.client`: one client connection: request parsing, limits, pipelining, keep-alive;
* :mod:`.exchange`: one request/response cycle, the handler's view of the client;
* :mod:`.flow`: backpressure on writes, awaited by producers;
* :mod:`.deadlines`: the client connection's timer, and the pool's shared deadline tick;
* :mod:`.pool` and :mod:`.upstream`: keep-alive connections to the one upstream origin;
* :mod:`.sockets`: socket options (TCP_NODELAY, buffer sizes, write-buffer water marks).
"""
