"""A token bucket refilled continuously, the shape of Anthropic's rate limiting.

A limit of N per minute refills at N/60 per second up to a capacity of N/60 * burst_s, so a
limit is enforced over short intervals as well as over the minute.

A cost larger than the capacity (one prompt of 5,000 tokens against a 2,000-token bucket) would
never fit, so such a request only waits for a full bucket and then drives the level below zero:
later requests wait for that debt to refill. Over a minute the limit still holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        per_minute: float,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if per_minute <= 0 or burst_s <= 0:
            raise ValueError("per_minute and burst_s must be positive")
        self.per_minute = per_minute
        self.rate = per_minute / 60.0  # per second
        # At least one unit, so a 30-rpm bucket with a one-second burst still admits a request.
        self.capacity = max(1.0, self.rate * burst_s)
        self._clock = clock
        self._level = self.capacity
        self._updated = clock()

    def level(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now
        return self._level

    def needed(self, cost: float) -> float:
        """The level a request of `cost` waits for (see the module docstring)."""
        return min(cost, self.capacity)

    def wait_s(self, cost: float) -> float:
        """Seconds until a request of `cost` would be admitted; 0 if it would be now."""
        short = self.needed(cost) - self.level()
        # The epsilon absorbs float drift, so a client that waits exactly as long as it was
        # told is admitted.
        return short / self.rate if short > 1e-9 else 0.0

    def take(self, cost: float) -> None:
        """Charge `cost` (the caller checked wait_s first). The level may go below zero."""
        self._level = self.level() - cost

    def give_back(self, amount: float) -> None:
        """Return part of an earlier charge (never above capacity)."""
        self._level = min(self.capacity, self.level() + amount)

    def remaining(self) -> int:
        return max(0, math.floor(self.level()))

    def full_in_s(self) -> float:
        """Seconds until the bucket is full again (the `-reset` header)."""
        return max(0.0, (self.capacity - self.level()) / self.rate)
