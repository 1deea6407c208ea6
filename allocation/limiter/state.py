"""The values the limiter's parts pass between them: plain dataclasses, no storage."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache

from allocation.outcomes import CallOutcome


@dataclass
class LimiterState:
    """What every process shares about one model: its rate-limit buckets (tokens left at the
    last refill, and when that was), a pause the provider asked for, the adaptive
    concurrency controller and the circuit breaker (each as its own to_dict()). Times are
    Unix seconds on the backend server's clock."""

    model: str
    request_tokens: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    refilled_at: float = 0.0  # 0: never refilled, the buckets start full
    paused_until: float = 0.0
    adaptive: dict = field(default_factory=dict)
    breaker: dict = field(default_factory=dict)
    # Which limit held calls back, and for how long: seconds per limit per minute over the
    # last hour, each moment counted once however many calls waited (decisions.record_waits).
    bound: dict = field(default_factory=dict)
    # The limiter's own round trips to its store for this model, across every process: each
    # sequence, plus the limit reads, lease renewals and clock reads a process made since its
    # last sequence. What the limiter costs per call (`manage.py bench` reports it).
    transactions: int = 0

    def stored_fields(self) -> dict:
        """Everything but the model's name, as a backend stores it. Shallow: the backend
        serialises the dicts at once (asdict's deep copy of the breaker's window was a third
        of a millisecond per sequence, two sequences per call)."""
        return {name: getattr(self, name) for name in self.field_names()}

    @classmethod
    @cache
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "model")


@dataclass(frozen=True)
class Admission:
    """The answer to one request for a slot: a lease, or how long to wait, or "breaker open"."""

    lease_id: int | None = None
    wait_s: float = 0.0  # refused: ask again after this long
    reason: str = ""  # refused: what is short ("concurrency", "rpm", "itpm", ...)
    breaker_open: bool = False
    delay_s: float = 0.0  # admitted: the call goes after this long (a reserved token)
    next_in_s: float = 0.0  # admitted: another call could be admitted after this long
    call_id: int | None = None  # admitted: the log row its CallCost.log_row wrote, if written


@dataclass(frozen=True)
class Wait:
    """A stretch of time a process's calls to a model waited for `limit` ("rpm", "itpm",
    "otpm", "concurrency" or "paused"), in Unix seconds on the backend server's clock."""

    limit: str
    start: float
    end: float


@dataclass(frozen=True)
class CallReport:
    """How a permitted call ended, as its permit's exit reported it."""

    outcome: CallOutcome
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    headers: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class LogRow:
    """A call's pending row in the usage log, written before the request leaves. A backend
    that stores in Postgres runs `insert` (a statement and its parameters, returning the new
    row's id) in the transaction that admits the call, so the row costs no round trip of its
    own; other backends leave it to the caller. If the caller gives up before the request
    leaves, the gate runs `delete(id)`: an unsent call must never be booked as lost."""

    insert: Callable[[], tuple[str, list]]
    delete: Callable[[int], None]


@dataclass(frozen=True)
class CallCost:
    """What one call is charged on admission: its estimated input tokens (cache reads left
    out, as the provider counts them) and its max_tokens, reserved from the output bucket
    until the call is settled. `log_row`: its pending log row, for a backend that can write
    it with the admission."""

    input_tokens: int
    max_tokens: int = 0
    log_row: LogRow | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LeaseInfo:
    """One call in flight: who holds it, until when, and the input and output tokens it
    reserved."""

    holder: str
    expires_at: float
    input_estimate: int = 0
    output_reserve: int = 0


@dataclass(frozen=True)
class Snapshot:
    """A model's shared state and its calls in flight (unexpired leases), as staff see it."""

    state: LimiterState
    in_flight: int
