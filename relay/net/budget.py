"""One budget for the request bodies held in memory, shared by all client connections.

The relay reads a request body whole before it sends it upstream (so a body that breaks its
limits never goes half-sent). Each body is capped (``--max-body-size``), but without a shared cap
the worst case would be every connection at once holding a full body: ``--max-connections`` x
``--max-body-size``, about 160 GiB at the defaults. So bodies take their bytes from one
:class:`BodyBudget` (``--max-body-memory``), a declared ``Content-Length`` all at once before
any of it is read, a chunked body as it arrives; a request that finds no room is answered 503
with ``Retry-After`` and nothing of it goes upstream. The bytes go back when the exchange ends.
"""

from __future__ import annotations


class BodyBudget:
    """Bytes of request bodies held now, against ``limit``."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (and nothing reserved) if they do not fit."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give_back(self, n: int) -> None:
        self.used -= n


class Hold:
    """What one request holds of a budget: taken as it grows, given back all at once."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, n: int) -> bool:
        if not self._budget.take(n):
            return False
        self.held += n
        return True

    def release(self) -> None:
        self._budget.give_back(self.held)
        self.held = 0
