"""Benchmark F (fan-out): one publish, many subscribers, against nginx + nchan and a Python hub.

    python -m bench.fanout                       # every hub, F1 + F2 (3 rounds) + F-stall
    python -m bench.fanout --quick               # 2,000 subscribers, 5 s windows, ~2 min
    python -m bench.fanout --hubs nchan,starlette --scenarios F1 --subscribers 5000 --duration 10

Hubs, each started fresh for every scenario, pinned to CPU 0 (this runner, its load generator
and redis-cli to CPU 1; a hub's redis-server shares the hub's CPU):

relay        ``python -m relay serve --max-connections <open-file limit - 100>`` (its default
             10,000 is below F1's subscribers plus publishers): ``GET /events/{channel}``
             subscribes, ``POST /events/{channel}`` publishes
relay-redis  the same with ``--redis``: channels shared through a redis-server (F1 only)
nchan        nginx, one worker, with the nchan module (bench/peers/nchan.conf)
starlette    FastAPI + sse-starlette on uvicorn, a Redis broadcast
             (bench/peers/starlette_channels.py)

Scenarios (deliveries: events read by subscribers; --rate is in deliveries per second, 30,000
by default, below where nchan's F2 saturates its core on a 2-core machine):

F1       N subscribers (10,000) on one channel, then publishes at --rate / N per second
F2       C channels x K subscribers (1,000 x 10), publishes spread round-robin over the
         channels at the same total delivery rate (--rate / K publishes per second)
F-stall  the relay only: the per-event p99 of 200 LLM streams relayed from its built-in mock
         (bench.loadgen in a second process, at real-time priority) while F1's subscribers are
         published to, against the same streams' p99 while they are not: publishing goes on
         and off in 2 s windows (--duration / 2 of each) with the streams running throughout,
         so both sides share the host's moments (its steal: --duration's steal_pct)

Every event's data is ~200 bytes starting with the publisher's time.time() when it sent the
POST, so each subscriber computes publish->delivery latency as it reads the event. The load
generator holds every subscriber socket itself (uvloop protocols; it only looks for ``data: ``
and parses the timestamp after it, never decodes chunking) and stops by itself: connects,
windows and drains are all bounded. Publishers are keep-alive connections that each wait for
their answer: a hub that cannot keep up gets fewer publishes (the achieved rate is reported)
rather than an unbounded backlog. Latencies include the load generator's own turn: it reads
one publish's subscriber sockets one after the other.

F1 and F2 run ``--rounds`` times (3), the hubs taking turns (nchan, relay, ..., then again),
and each figure in the table is the median of a hub's rounds: one 20 s window of one hub
against one of another, minutes apart, compared whatever the shared host did in each (its
pauses of several ms decide a p99); turns and medians compare the hubs over the same stretch
of time. Each round's figures are kept in the JSON (``rounds``) and its ratios in the notes.

Hub CPU is user+system of its process tree from /proc over the window (first publish to the
last delivery, or 5 s after the last publish); the cores' busy % (from /proc/stat, softirq
included) shows which side was the limit. RSS per idle subscriber is (RSS with all connected
and idle - RSS before) / N. Results: bench/results/fanout.md and fanout.json (``--quick``:
fanout-quick.*, so a try never replaces the report).

The modules: ``wire`` (event bytes, the subscribers' scan, publish answers), ``load``
(subscriber and publisher connections), ``hubs`` (starting each hub), ``meters`` (CPU and
cores around a window), ``figures`` (a window's row, pure), ``scenarios`` (F1 and F2's
window), ``stall`` (F-stall), ``rounds`` (medians of rounds), ``report`` (the table and its
notes), ``cli`` (flags and the runner).
"""
