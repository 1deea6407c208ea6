"""A circuit breaker per model: stop calling a model that keeps failing, and test it again later.

closed     calls flow; `failure_threshold` consecutive failures open the breaker.
open       calls are refused (the caller falls back to the next model) for `cooldown_s`.
half_open  after the cool-down, up to `half_open_max_probes` calls go through as probes: a success
           closes the breaker, a failure opens it for another cool-down.

A pure state machine: time comes in as `now`, and `to_dict()`/`from_dict()` let the state live in a
database row or in Redis so that every worker process sees the same breaker. Reading, deciding and
writing back is the caller's transaction to make atomic (e.g. SELECT ... FOR UPDATE).
"""

import enum
from dataclasses import dataclass
from typing import Self

from allocation.outcomes import outcome as as_outcome


def counts_as_failure(outcome: str) -> bool:
    """A 429 means the model is fine and we are too fast: the adaptive limit slows us down,
    and opening the breaker would only push the whole load onto the fallback model."""
    return as_outcome(outcome).is_failure


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerParams:
    # Consecutive, not a rate over a window: simple to share between processes, and one success
    # in between shows the model still answers.
    failure_threshold: int = 5
    # Long enough for a short overload to pass, short enough that a reading keeps its best model.
    cooldown_s: float = 30.0
    # One probe: a sick model should see one request, not a spread's worth.
    half_open_max_probes: int = 1

    def __post_init__(self):
        if self.failure_threshold < 1 or self.half_open_max_probes < 1 or self.cooldown_s < 0:
            raise ValueError(
                "need failure_threshold >= 1, half_open_max_probes >= 1, cooldown_s >= 0"
            )


class CircuitBreaker:
    def __init__(self, params: BreakerParams | None = None):
        self.params = params or BreakerParams()
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive
        self._opened_at: float | None = None
        self._probes = 0  # let through since half-opening
        self._probe_started_at: float | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def opened_at(self) -> float | None:
        return self._opened_at

    @property
    def failures(self) -> int:
        return self._failures

    def allow(self, now: float) -> bool:
        """May a call go to this model now? In half_open, True means a probe: report its result."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._opened_at is not None and now - self._opened_at < self.params.cooldown_s:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probes = 0
        # A probe whose worker died never reports back; after a cool-down, try another rather than
        # stay half-open for ever.
        stale = (
            self._probe_started_at is not None
            and now - self._probe_started_at >= self.params.cooldown_s
        )
        if stale:
            self._probes = 0
        if self._probes >= self.params.half_open_max_probes:
            return False
        self._probes += 1
        self._probe_started_at = now
        return True

    def record_success(self, now: float) -> None:
        # A late success from a call sent before the breaker opened proves little: while open,
        # only the probes of half_open decide.
        if self._state is BreakerState.OPEN:
            return
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = None
        self._probes = 0
        self._probe_started_at = None

    def record_failure(self, now: float) -> None:
        self._failures += 1
        # A failed probe reopens at once; while open, a late failure counts but does not extend
        # the cool-down.
        probe_failed = self._state is BreakerState.HALF_OPEN
        too_many = self._failures >= self.params.failure_threshold
        if probe_failed or (self._state is BreakerState.CLOSED and too_many):
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probes = 0
        self._probe_started_at = None

    def to_dict(self) -> dict:
        return {
            "state": str(self._state),
            "failures": self._failures,
            "opened_at": self._opened_at,
            "probes": self._probes,
            "probe_started_at": self._probe_started_at,
        }

    @classmethod
    def from_dict(cls, data: dict, params: BreakerParams | None = None) -> Self:
        """Rebuild from `to_dict()` output; parameters come from code, not storage."""
        breaker = cls(params)
        breaker._state = BreakerState(data.get("state", BreakerState.CLOSED))
        breaker._failures = int(data.get("failures", 0))
        breaker._opened_at = data.get("opened_at")
        breaker._probes = int(data.get("probes", 0))
        breaker._probe_started_at = data.get("probe_started_at")
        return breaker
