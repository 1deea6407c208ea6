"""Where the limiter's shared state lives: one sequence of operations, swappable storage.

After django-q2's brokers (`django_q/brokers/__init__.py`): `LimiterBackend` writes the
acquire, release, renew and reset sequences once, on top of a handful of storage operations
that each subclass supplies (`postgres.PostgresBackend`, `redis.RedisBackend`);
`get_backend()` picks one from settings. Everything else (the in-process gate, the admin,
the reports, the bench) talks to this interface only, so both backends behave and show the
same. The decisions inside the sequences are `allocation.limiter.decisions`, pure functions
on a `LimiterState`.

What stays in Postgres whichever backend holds the state: the provider's limits (ModelLimit,
entered by staff) and the history of limit and breaker changes (LimitChange), written once
the change is stored.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import zip_longest
from typing import TypeVar

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from allocation.adaptive_limit import AimdParams
from allocation.limiter import decisions
from allocation.limiter.buckets import Limits
from allocation.limiter.holder import current_holder
from allocation.limiter.params import LimiterParams
from allocation.limiter.state import (
    Admission,
    CallCost,
    CallReport,
    LeaseInfo,
    LimiterState,
    LogRow,
    Snapshot,
    Wait,
)
from allocation.models import LimitChange, ModelLimit

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Locked:
    """One model's state as a backend loaded it for one sequence, held (locked or watched)
    until the sequence's writes are stored, and the lease writes the sequence asks for."""

    def __init__(
        self,
        state: LimiterState,
        lease: LeaseInfo | None,
        count: Callable[[], int],
        limits: Limits | None,
    ):
        self.state = state
        # The lease the sequence names (release), or None when there is none or it is gone.
        self.lease = lease
        # Staff's limits for the model (None: none configured), read with the state.
        self.limits = limits
        self._count = count
        self._in_flight: int | None = None
        self.new_leases: list[LeaseInfo] = []  # store these leases, return their ids
        # Per new lease, its call's CallCost.log_row (or None); a backend that can writes
        # them in the step's transaction and lists their ids in `call_ids` (None: not written).
        self.log_rows: list[LogRow | None] = []
        self.call_ids: list[int | None] = []
        self.drop_lease = False  # set: delete the named lease

    def in_flight(self) -> int:
        """Unexpired leases of the model, the named one included; counted once, when asked."""
        if self._in_flight is None:
            self._in_flight = self._count()
        return self._in_flight


class LimiterBackend:
    """The shared limiter's sequences, written once. Subclasses supply storage only: the
    operations under "Storage" below, each documented with what it must guarantee."""

    name = "base"

    # --- The sequences (callers use these; subclasses leave them alone) ------------------

    def try_acquire(
        self,
        model: str,
        *,
        input_estimate: int,
        params: LimiterParams,
        now: float,
        max_tokens: int = 0,
    ) -> Admission:
        """Ask for one slot for a call to `model` now (try_acquire_many for one call)."""
        cost = CallCost(input_estimate, max_tokens)
        return self.try_acquire_many(model, costs=[cost], params=params, now=now)[0]

    def try_acquire_many(
        self,
        model: str,
        *,
        costs: list[CallCost],
        params: LimiterParams,
        now: float,
        waits: list[Wait] = (),
    ) -> list[Admission]:
        """Ask for slots for calls to `model` now, in order: the breaker, then the buckets and
        the concurrency limit decide, in one atomic step shared by every process. Returns an
        Admission per call admitted (a lease held by this process until `release`, renewed
        by `renew`, else expiring after params.lease_ttl_s), then, if one was refused, its
        refusal (how long to wait): calls after a refused one are not asked for. One step
        for the waiting calls of a process instead of one each. `waits`: what this process's
        calls waited for since its last sequence, for the record (decisions.record_waits)."""
        self.register(model)
        round_trips = 1 + take_uncounted()
        last: list[Locked] = []  # the step's Locked, for the ids of the log rows it wrote

        def decide(locked: Locked):
            last[:] = [locked]
            locked.state.transactions += round_trips
            decisions.record_waits(locked.state, list(waits), now=now)
            locked.new_leases, locked.log_rows = [], []
            allowed, change = decisions.ask_breaker(locked.state, params, now)
            if not allowed:
                return [Admission(breaker_open=True)], change, locked.state
            answers = []
            for cost in costs:
                if locked.limits is not None:  # no limits configured: count the call, admit it
                    decision = decisions.decide_admission(
                        locked.state,
                        locked.limits,
                        in_flight=locked.in_flight() + len(locked.new_leases),
                        input_estimate=cost.input_tokens,
                        output_reserve=cost.max_tokens,
                        params=params,
                        now=now,
                    )
                    if not decision.admitted:
                        answers.append(
                            Admission(
                                wait_s=decision.wait_s or params.poll_s, reason=decision.reason
                            )
                        )
                        break
                    answers.append(Admission(delay_s=decision.wait_s, next_in_s=decision.next_in_s))
                else:
                    answers.append(Admission())
                locked.new_leases.append(
                    LeaseInfo(
                        holder=current_holder(),
                        expires_at=now + params.lease_ttl_s,
                        input_estimate=cost.input_tokens,
                        output_reserve=cost.max_tokens if locked.limits is not None else 0,
                    )
                )
                locked.log_rows.append(cost.log_row)
            return answers, change, locked.state

        (answers, change, state), lease_ids = self.atomically(
            model, now=now, lease_id=None, decide=decide
        )
        if change:
            log_change(model, state, reason=change)
        admitted = zip_longest(lease_ids, last[0].call_ids if last else [])
        return [
            replace(answer, lease_id=lease_id, call_id=call_id)
            for answer, (lease_id, call_id) in zip(answers, admitted, strict=False)
        ] + answers[len(lease_ids) :]

    def release(
        self,
        lease_id: int,
        model: str,
        report: CallReport | None,
        *,
        params: LimiterParams,
        now: float,
        next_cost: CallCost | None = None,
    ) -> Admission | None:
        """Give a slot back. With a report, the call's outcome settles the buckets (real
        tokens for estimated ones, the unused output reservation returned), feeds the
        controller and the breaker. Without one the call is ignored (cancelled, or our own
        bug): the slot and its output reservation return and nothing is learned, as
        Netflix's Listener.onIgnore.

        `next_cost`: the call this process would ask for next. Returns, for it, what asking
        right after this release would answer (a refusal's wait_s and reason, or wait_s 0),
        without admitting it: the asker sleeps until then instead of polling."""
        round_trips = 1 + take_uncounted()

        def decide(locked: Locked):
            locked.state.transactions += round_trips
            locked.drop_lease = True
            lease, limits = locked.lease, locked.limits
            change = None
            if report is not None:
                change = decisions.apply_outcome(
                    locked.state,
                    limits,
                    report,
                    input_estimate=lease.input_estimate if lease else 0,
                    output_reserved=lease.output_reserve if lease else 0,
                    in_flight=locked.in_flight(),
                    params=params,
                    now=now,
                )
            elif limits is not None and lease is not None and lease.output_reserve:
                decisions.give_back_reservation(
                    locked.state,
                    limits,
                    output_reserved=lease.output_reserve,
                    params=params,
                    now=now,
                )
            hint = None
            if next_cost is not None:
                hint = Admission()
                if limits is not None:
                    decision = decisions.next_admission_in(
                        locked.state,
                        limits,
                        next_cost,
                        in_flight=locked.in_flight() - (lease is not None),
                        params=params,
                        now=now,
                    )
                    if not decision.admitted:
                        hint = Admission(wait_s=decision.wait_s, reason=decision.reason)
            return change, locked.state, hint

        (change, state, hint), _ = self.atomically(model, now=now, lease_id=lease_id, decide=decide)
        if change:
            log_change(model, state, reason=change)
        return hint

    def renew(self, params: LimiterParams, now: float) -> int:
        """Extend every lease this process holds by params.lease_ttl_s from `now`, so that
        only a dead process's calls stop counting. Returns how many were renewed."""
        count_round_trip()
        return self.renew_held(current_holder(), expires_at=now + params.lease_ttl_s, now=now)

    def reset(self) -> None:
        """Forget every model's shared state and every lease (the bench starts from fresh
        state). Limits and their history are staff's and stay."""
        self.wipe()

    def snapshots(self, *, now: float, model: str | None = None) -> dict[str, Snapshot]:
        """Every model's state and calls in flight (or one model's), keyed by model."""
        return self.read(now=now, model=model)

    def clock(self) -> float:
        """Unix time on the backend's server: one clock for every machine sharing limits."""
        count_round_trip()
        return self.server_time()

    def register(self, model: str) -> None:
        """Make sure staff pages list `model` (they list ModelState rows). Postgres stores the
        state in that row, so only other backends need to create it."""

    # --- Storage (each subclass supplies these) ------------------------------------------

    def atomically(
        self, model: str, *, now: float, lease_id: int | None, decide: Callable[[Locked], T]
    ) -> tuple[T, int | None]:
        """Load `model`'s state (a fresh LimiterState if none), the lease `lease_id` if given
        and still there, a way to count unexpired leases at `now`, and the model's limits
        (`limits_for`, or read with the state); call decide(locked);
        then store locked.state, delete the named lease if locked.drop_lease, and store
        locked.new_leases, all as one atomic step: no other process may act on the
        model between the load and the store. A backend that stores in Postgres also writes
        locked.log_rows in that step and sets locked.call_ids; others may leave them.
        `decide` may be called again if the step has to be retried, so it must only read
        and change `locked`. Returns what decide returned and the new leases' ids, in
        order."""
        raise NotImplementedError

    def renew_held(self, holder: str, *, expires_at: float, now: float) -> int:
        """Move the expiry of every lease `holder` holds to `expires_at` (`now` is the
        server's time); return how many."""
        raise NotImplementedError

    def read(self, *, now: float, model: str | None) -> dict[str, Snapshot]:
        """Each model's stored state with its unexpired leases at `now` counted, without
        locking: staff pages and the bench only look."""
        raise NotImplementedError

    def holders(self, model: str, *, now: float) -> dict[str, int]:
        """`model`'s unexpired leases at `now`, counted per holding process."""
        raise NotImplementedError

    def wipe(self) -> None:
        """Delete every model's state and every lease."""
        raise NotImplementedError

    def server_time(self) -> float:
        """Unix time on the server that stores the state."""
        raise NotImplementedError


# Staff's limits change seldom, yet every admission and release needs them. Postgres reads
# them in the same message as the state (no round trip of their own); a backend that keeps
# its state elsewhere reads them from the database at most once per LIMITS_CACHE_S per model
# and process. An edit in the admin clears this process's copy at once (signals below) and
# reaches the other processes within LIMITS_CACHE_S.
LIMITS_CACHE_S = 2.0
_limits_cache: dict[str, tuple[float, Limits | None]] = {}


def limits_for(model: str) -> Limits | None:
    """The provider's limits for `model`: its own ModelLimit row, else the "*" row."""
    now = time.monotonic()
    cached = _limits_cache.get(model)
    if cached is not None and now - cached[0] < LIMITS_CACHE_S:
        return cached[1]
    limits = _read_limits(model)
    count_round_trip()
    _limits_cache[model] = (now, limits)
    return limits


# Round trips made outside a sequence (limit reads, renewals, clock reads), added to the
# model's count by this process's next sequence.
_uncounted = 0


def count_round_trip() -> None:
    global _uncounted
    _uncounted += 1


def take_uncounted() -> int:
    global _uncounted
    taken, _uncounted = _uncounted, 0
    return taken


def forget_limits(**_signal_kwargs) -> None:
    _limits_cache.clear()


post_save.connect(forget_limits, sender=ModelLimit)
post_delete.connect(forget_limits, sender=ModelLimit)


def _read_limits(model: str) -> Limits | None:
    return read_limits([model])[model]


def read_limits(models: list[str]) -> dict[str, Limits | None]:
    """Each model's limits (its own row, else the "*" row, else None), in one query."""
    rows = {
        row.model: row for row in ModelLimit.objects.filter(model__in=[*models, ModelLimit.DEFAULT])
    }
    found = {}
    for model in models:
        row = rows.get(model) or rows.get(ModelLimit.DEFAULT)
        found[model] = None if row is None else Limits(*(getattr(row, n) for n in LIMIT_COLUMNS))
    return found


# ModelLimit's columns, in the order of Limits' fields.
LIMIT_COLUMNS = (
    "requests_per_minute",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
    "max_concurrent_calls",
)


def log_change(model: str, state: LimiterState, *, reason: str) -> None:
    """A change of adaptive limit or breaker, for staff's history."""
    try:
        LimitChange.objects.create(
            model=model,
            limit=(state.adaptive or {}).get("limit", AimdParams().initial_limit),
            reason=reason[:30],
            breaker_state=(state.breaker or {}).get("state", "closed"),
        )
    except Exception:  # noqa: BLE001 - the change is stored; only its history line is lost
        logger.exception("could not log a limit change of %s (%s)", model, reason)


_backends: dict[str, LimiterBackend] = {}


def get_backend() -> LimiterBackend:
    """The Redis backend when settings.LLM_LIMITER_REDIS_URL is set, else Postgres (the
    database Django uses). One instance per setting, so tests may switch between them."""
    url = getattr(settings, "LLM_LIMITER_REDIS_URL", "") or ""
    backend = _backends.get(url)
    if backend is None:
        if url:
            from allocation.limiter.backends.redis import RedisBackend

            backend = RedisBackend(url)
        else:
            from allocation.limiter.backends.postgres import PostgresBackend

            backend = PostgresBackend()
        _backends[url] = backend
    return backend
