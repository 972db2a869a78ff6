"""The OpenAI-compatible mock upstream (``relay mock``, and ``make run``'s default upstream).

* :mod:`.server`: the routes, and the request headers that steer the mock (pacing, failures);
* :mod:`.generate`: what it generates: chat completions, legacy completions, the Responses API;
* :mod:`.events`: writing pre-encoded events to a client, paced or back to back, cheaply.
"""

from .generate import completion_text
from .server import MockUpstream

__all__ = ["MockUpstream", "completion_text"]
