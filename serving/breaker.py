"""A circuit breaker for the online store: after a failure, fail fast for a short while.

The service runs its sync APIs one at a time per worker (BentoML's default), so while Redis is
stalled every queued request would wait out its own socket timeout in turn: the k-th of n
concurrent requests answered after about k seconds. Once one request found the store
unreachable, the breaker answers the next ones 503 at once for `cool_off` seconds (the
`Retry-After` the 503s carry); then one request tries the store again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    def __init__(self, cool_off: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.cool_off, self._clock = cool_off, clock
        self._until = float("-inf")

    def is_open(self) -> bool:
        """True while requests should not try the store."""
        return self._clock() < self._until

    def trip(self) -> None:
        """The store just failed: fail fast for `cool_off` seconds from now."""
        self._until = self._clock() + self.cool_off

    def reset(self) -> None:
        """The store answered again (the readiness probe read it): try it right away."""
        self._until = float("-inf")
