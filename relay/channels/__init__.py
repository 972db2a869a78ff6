"""Channels: publish/subscribe over Server-Sent Events (``GET`` / ``POST /events/{channel}``).

Reading order:

* :mod:`.events`: ids (``<ms>-<seq>``, as a Redis Stream's) and the bytes of an event, encoded
  once for all subscribers;
* :mod:`.history`: the bounded history in memory, and the replay rule (exact, or a reset);
* :mod:`.subscriber`: one subscriber, registered for live events before its replay;
* :mod:`.hub`: this instance's subscribers and the fan-out, in slices, never waiting;
* :mod:`.broker`: where events are published and kept: memory here, Redis in
  :mod:`.redis_broker` (the optional extra, for many relay instances);
* :mod:`.endpoints`: the HTTP side: tokens, Last-Event-ID, the JSON a publish takes.
"""
