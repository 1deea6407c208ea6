"""A circuit breaker per model: stop calling a model that keeps failing, and test it again later.

closed     calls flow; the breaker opens when, over the last `window_s` seconds, at least
           `min_calls` calls ended and at least `failure_rate` of them failed.
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
    # A rate over a window, not a run of consecutive failures: an overloaded model answers 529
    # in milliseconds while its successes take seconds, so five quick failures in a row happen
    # at a 20% failure rate and used to send almost the whole load to a dearer fallback.
    # Half the calls failing over half a minute, with at least 20 calls seen, is a sick model.
    failure_rate: float = 0.5
    min_calls: int = 20
    window_s: float = 30.0
    # Long enough for a short overload to pass, short enough that a reading keeps its best model.
    cooldown_s: float = 30.0
    # One probe: a sick model should see one request, not a spread's worth.
    half_open_max_probes: int = 1

    def __post_init__(self):
        if (
            not 0 < self.failure_rate <= 1
            or self.min_calls < 1
            or self.window_s <= 0
            or self.half_open_max_probes < 1
            or self.cooldown_s < 0
        ):
            raise ValueError(
                "need 0 < failure_rate <= 1, min_calls >= 1, window_s > 0, "
                "half_open_max_probes >= 1, cooldown_s >= 0"
            )


class CircuitBreaker:
    def __init__(self, params: BreakerParams | None = None):
        self.params = params or BreakerParams()
        self._state = BreakerState.CLOSED
        # Per whole second of the window: [second, calls, failures], oldest first. A second's
        # granularity keeps the state small enough to live in a row or a Redis key.
        self._window: list[list[int]] = []
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
        """Failures within the window."""
        return sum(failures for _, _, failures in self._window)

    @property
    def calls(self) -> int:
        """Calls that ended within the window."""
        return sum(calls for _, calls, _ in self._window)

    def _count(self, now: float, *, failed: bool) -> None:
        second = int(now)
        oldest = int(now - self.params.window_s)
        self._window = [bucket for bucket in self._window if bucket[0] > oldest]
        if self._window and self._window[-1][0] == second:
            self._window[-1][1] += 1
            self._window[-1][2] += int(failed)
        else:
            self._window.append([second, 1, int(failed)])

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
        if self._state is BreakerState.HALF_OPEN:
            self._window = []  # a fresh start: the failures that opened it are history
        else:
            self._count(now, failed=False)
        self._state = BreakerState.CLOSED
        self._opened_at = None
        self._probes = 0
        self._probe_started_at = None

    def record_failure(self, now: float) -> None:
        self._count(now, failed=True)
        # A failed probe reopens at once; while open, a late failure counts but does not extend
        # the cool-down.
        probe_failed = self._state is BreakerState.HALF_OPEN
        calls, failures = self.calls, self.failures
        too_many = calls >= self.params.min_calls and failures >= self.params.failure_rate * calls
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
            "window": self._window,
            "failures": self.failures,  # for staff pages; the window is what decides
            "opened_at": self._opened_at,
            "probes": self._probes,
            "probe_started_at": self._probe_started_at,
        }

    @classmethod
    def from_dict(cls, data: dict, params: BreakerParams | None = None) -> Self:
        """Rebuild from `to_dict()` output; parameters come from code, not storage."""
        breaker = cls(params)
        breaker._state = BreakerState(data.get("state", BreakerState.CLOSED))
        breaker._window = [list(map(int, bucket)) for bucket in data.get("window", [])]
        breaker._opened_at = data.get("opened_at")
        breaker._probes = int(data.get("probes", 0))
        breaker._probe_started_at = data.get("probe_started_at")
        return breaker
