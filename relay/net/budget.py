"""One budget for the request bodies held in memory, shared by all client connections.

The relay reads a request body whole before it sends it upstream (so a body that breaks its
limits never goes half-sent). Each body is capped (``--max-body-size``), but without a shared cap
the worst case would be every connection at once holding a full body: ``--max-connections`` x
``--max-body-size``, about 160 GiB at the defaults. So bodies take their bytes from one
:class:`BodyBudget` (``--max-body-memory``) as they arrive: what counts is what is received and
held, never what a ``Content-Length`` declares (a client that declares 16 MiB and sends one byte
holds one byte, and cannot lock others out by declaring). A read whose body bytes do not fit is
answered 503 with ``Retry-After`` (:data:`OVER_BUDGET`), the connection closes and nothing of
the request goes upstream. The bytes go back when the exchange ends (its body is held until
then), or when the connection is refused or lost.
"""

from __future__ import annotations

from ..http1.request_head import Rejection

OVER_BUDGET = Rejection(
    503, "the relay holds as many request bodies as it may (--max-body-memory); retry shortly",
    ((b"retry-after", b"1"),))


class BodyBudget:
    """Bytes of request bodies held now, against ``limit`` (``used`` is the gauge's count);
    each request takes and gives back its bytes through its :class:`Hold`."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class Hold:
    """What one request holds of a budget: taken as its bytes arrive (``take``: False, and
    nothing counted, if they do not fit), given back all at once (``release``)."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, n: int) -> bool:
        budget = self._budget
        if budget.used + n > budget.limit:
            return False
        budget.used += n
        self.held += n
        return True

    def release(self) -> None:
        self._budget.used -= self.held
        self.held = 0
