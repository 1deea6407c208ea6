"""The global limiter: one provider's limits, shared by every worker process on every machine.

Each model has a ModelState row in Postgres holding its rate-limit buckets, its adaptive
concurrency controller (AimdLimit) and its circuit breaker; each call in flight holds a Lease
row. Admission and release each run in one transaction under SELECT ... FOR UPDATE on the
model's row, so two processes can never both take the last slot (healthchecks' TokenBucket
accepts that race for login throttling; provider limits cannot). A process renews its leases
while it lives; a killed process's leases expire after `lease_ttl_s` and its share returns.
With settings.LLM_LIMITER_REDIS_URL set, the same state lives in Redis instead
(allocation/limiter_redis.py, see `backend()`); the decisions below are shared by both.

Inside a process, callers wait in one queue per model, ordered by priority (later phases and
older readings first, so readings in progress finish before new ones start), and only the
head of the queue asks the database: one poller per model per process, not one per call.
"""

import asyncio
import heapq
import itertools
import logging
import math
import os
import socket
import sys
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from allocation.adaptive_limit import AimdLimit, AimdParams
from allocation.admission import Buckets, Decision, Limits, admit, capacity, refill, settle
from allocation.circuit_breaker import BreakerParams, CircuitBreaker, counts_as_failure
from allocation.models import Lease, LimitChange, ModelLimit, ModelState
from allocation.retry_policy import retry_after_from_headers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimiterParams:
    # Anthropic may enforce a per-minute limit over intervals as short as a second, so its
    # buckets hold about a second of refill.
    provider_burst_s: float = 1.0
    # Ours hold a tenth less. Both refill at the same rate and see the same requests, so the
    # provider's bucket then always holds more than ours: the margin absorbs jitter in when
    # our requests arrive, instead of each early arrival costing a 429 and a pause.
    burst_s: float = 0.9
    # A killed worker's calls stop counting after this long; live workers renew every third.
    lease_ttl_s: float = 15.0
    # Waiting for a free slot held by another process: how often the queue head asks again.
    poll_s: float = 0.05
    # Never sleep longer than this between asks, whatever the buckets say: limits may change.
    max_wait_s: float = 1.0
    # How often a process re-measures its clock against the shared server's.
    clock_refresh_s: float = 60.0
    aimd: AimdParams = field(default_factory=AimdParams)
    breaker: BreakerParams = field(default_factory=BreakerParams)


def get_params() -> LimiterParams:
    """Defaults, with settings.LLM_LIMITER (a dict) overriding them; tests shorten the times."""
    overrides = dict(getattr(settings, "LLM_LIMITER", {}) or {})
    aimd = AimdParams(**overrides.pop("aimd", {}))
    breaker = BreakerParams(**overrides.pop("breaker", {}))
    return LimiterParams(aimd=aimd, breaker=breaker, **overrides)


class BreakerOpen(Exception):
    """The model's circuit is open: its calls go to the next model until it is probed."""


HOLDER = f"{socket.gethostname()}:{os.getpid()}"


# --- The transactions: everything that touches the shared rows --------------------------


def limits_for(model: str) -> Limits | None:
    rows = {
        row.model: row for row in ModelLimit.objects.filter(model__in=[model, ModelLimit.DEFAULT])
    }
    row = rows.get(model) or rows.get(ModelLimit.DEFAULT)
    if row is None:
        return None
    return Limits(
        row.requests_per_minute,
        row.input_tokens_per_minute,
        row.output_tokens_per_minute,
        row.max_concurrent_calls,
    )


def _locked_state(model: str) -> ModelState:
    """The model's shared row, locked until the surrounding transaction ends."""
    if connection.vendor == "postgresql":
        # Limiter state is short-lived: after a crash, a few lost milliseconds of it only
        # cost a little accuracy, so these commits need not wait for the disk.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
    state, _ = ModelState.objects.select_for_update().get_or_create(model=model)
    return state


def _buckets(state: ModelState, limits: Limits, params: LimiterParams, now: float) -> Buckets:
    if state.refilled_at == 0:
        return Buckets.full(limits, params.burst_s, now)
    buckets = Buckets(
        state.request_tokens, state.input_tokens, state.output_tokens, state.refilled_at
    )
    refill(buckets, limits, burst_s=params.burst_s, now=now)
    return buckets


def _store_buckets(state: ModelState, buckets: Buckets) -> None:
    state.request_tokens = buckets.requests
    state.input_tokens = buckets.input_tokens
    state.output_tokens = buckets.output_tokens
    state.refilled_at = buckets.refilled_at


@dataclass(frozen=True)
class Attempted:
    lease_id: int | None = None
    wait_s: float = 0.0
    breaker_open: bool = False


def try_acquire(model: str, *, input_estimate: int, params: LimiterParams, now: float) -> Attempted:
    with transaction.atomic():
        state = _locked_state(model)
        breaker_before = state.breaker
        allowed, change = ask_breaker(state, params, now)
        if state.breaker != breaker_before:
            state.save(update_fields=["breaker", "updated_at"])
        if change:
            log_change(model, state, reason=change)
        if not allowed:
            return Attempted(breaker_open=True)
        limits = limits_for(model)
        if limits is None:  # no limits configured: count the call, admit it
            return Attempted(lease_id=_lease(model, input_estimate, params, now))
        in_flight = Lease.objects.filter(model=model, expires_at__gt=now).count()
        decision = decide_admission(
            state,
            limits,
            in_flight=in_flight,
            input_estimate=input_estimate,
            params=params,
            now=now,
        )
        state.save(
            update_fields=[
                "request_tokens",
                "input_tokens",
                "output_tokens",
                "refilled_at",
                "updated_at",
            ]
        )
        if not decision.admitted:
            return Attempted(wait_s=decision.wait_s or params.poll_s)
        return Attempted(lease_id=_lease(model, input_estimate, params, now))


# --- The decisions, shared by both backends (this one and allocation.limiter_redis) -------
# Each takes the model's state as a ModelState (saved or not), changes it in place, and leaves
# loading, locking and storing to the backend.


def ask_breaker(state: ModelState, params: LimiterParams, now: float) -> tuple[bool, str | None]:
    """May a call go to the model now? Returns (allowed, the LimitChange reason if it moved)."""
    breaker = CircuitBreaker.from_dict(state.breaker, params.breaker)
    before = breaker.state
    allowed = breaker.allow(now)
    # Stored even when the state stays put: a half-open breaker counts its probes.
    state.breaker = breaker.to_dict()
    return allowed, (f"breaker_{breaker.state}" if breaker.state != before else None)


def decide_admission(
    state: ModelState,
    limits: Limits,
    *,
    in_flight: int,
    input_estimate: int,
    params: LimiterParams,
    now: float,
) -> Decision:
    """Refill the buckets, then admit (and charge) one call or say how long to wait."""
    buckets = _buckets(state, limits, params, now)
    controller = AimdLimit.from_dict(state.adaptive, params.aimd)
    decision = admit(
        buckets,
        limits,
        in_flight=in_flight,
        concurrency_limit=controller.limit,
        input_estimate=input_estimate,
        paused_until=max(state.paused_until, controller.paused_until),
        burst_s=params.burst_s,
        now=now,
    )
    _store_buckets(state, buckets)
    return decision


def _lease(model: str, input_estimate: int, params: LimiterParams, now: float) -> int:
    return Lease.objects.create(
        model=model,
        holder=HOLDER,
        expires_at=now + params.lease_ttl_s,
        input_estimate=input_estimate,
    ).pk


@dataclass
class Outcome:
    """What a permitted call did, reported back when it ends."""

    outcome: str = "error"
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    headers: dict = field(default_factory=dict)


def release(
    lease_id: int, model: str, result: Outcome, *, params: LimiterParams, now: float
) -> None:
    with transaction.atomic():
        state = _locked_state(model)
        lease = Lease.objects.filter(pk=lease_id).first()
        input_estimate = lease.input_estimate if lease else 0
        in_flight = Lease.objects.filter(model=model, expires_at__gt=now).count()
        if lease:  # gone if it expired and a renewal could not save it
            lease.delete()
        change = apply_outcome(
            state,
            limits_for(model),
            result,
            input_estimate=input_estimate,
            in_flight=in_flight,
            params=params,
            now=now,
        )
        state.save()
        if change:
            log_change(model, state, reason=change)


def apply_outcome(
    state: ModelState,
    limits: Limits | None,
    result: Outcome,
    *,
    input_estimate: int,
    in_flight: int,
    params: LimiterParams,
    now: float,
) -> str | None:
    """Settle a finished call into the buckets, the controller and the breaker.

    Returns the LimitChange reason when the limit or the breaker moved, else None.
    """
    if limits is not None:
        buckets = _buckets(state, limits, params, now)
        settle(
            buckets,
            input_estimate=input_estimate,
            input_used=result.input_tokens,
            output_used=result.output_tokens,
        )
        if result.outcome == "rate_limited":
            # The provider counted differently from us: trust it and start from empty.
            buckets.requests = min(buckets.requests, 0.0)
        _store_buckets(state, buckets)

    controller = AimdLimit.from_dict(state.adaptive, params.aimd)
    limit_before = controller.limit
    # Seconds per output token: comparable between short and long answers.
    rtt = (
        result.latency_s / max(result.output_tokens, 1)
        if result.outcome == "ok"
        else result.latency_s
    )
    if not (result.outcome == "rate_limited" and _bucket_exhausted(result.headers)):
        # A 429 with an empty request or token bucket is a rate problem, which the buckets
        # above now correct; only an unexplained 429 (too many at once) cuts concurrency.
        controller.on_sample(now=now, rtt_s=rtt, in_flight=in_flight, outcome=result.outcome)
    retry_after = retry_after_from_headers(result.headers, now=now) if result.headers else None
    # "remaining" is what is left in the provider's bucket, which holds a burst's worth of
    # the per-minute limit the "limit" header names: compare like with like.
    headers = result.headers
    controller.on_headers(
        now=now,
        requests_remaining=_int_header(headers, "anthropic-ratelimit-requests-remaining"),
        requests_limit=_burst(headers, "anthropic-ratelimit-requests-limit", params),
        tokens_remaining=_int_header(headers, "anthropic-ratelimit-output-tokens-remaining"),
        tokens_limit=_burst(headers, "anthropic-ratelimit-output-tokens-limit", params),
        retry_after_s=retry_after,
    )
    state.adaptive = controller.to_dict()
    state.paused_until = max(state.paused_until, controller.paused_until)

    breaker = CircuitBreaker.from_dict(state.breaker, params.breaker)
    breaker_before = breaker.state
    if result.outcome == "ok":
        breaker.record_success(now)
    elif counts_as_failure(result.outcome):
        breaker.record_failure(now)
    state.breaker = breaker.to_dict()
    if controller.limit != limit_before:
        return controller.snapshot()["last_reason"]
    if breaker.state != breaker_before:
        return f"breaker_{breaker.state}"
    return None


def clock() -> float:
    """Unix time on the database server: one clock for every machine sharing the limits."""
    if connection.vendor != "postgresql":
        return time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
        return float(cursor.fetchone()[0])


def discard_lease(lease_id: int) -> None:
    Lease.objects.filter(pk=lease_id).delete()


def renew_leases(params: LimiterParams, now: float) -> int:
    return Lease.objects.filter(holder=HOLDER).update(expires_at=now + params.lease_ttl_s)


def log_change(model: str, state: ModelState, *, reason: str) -> None:
    LimitChange.objects.create(
        model=model,
        limit=(state.adaptive or {}).get("limit", AimdParams().initial_limit),
        reason=reason[:30],
        breaker_state=(state.breaker or {}).get("state", "closed"),
    )


def _bucket_exhausted(headers: dict) -> bool:
    return any(
        _int_header(headers, f"anthropic-ratelimit-{kind}-remaining") == 0
        for kind in ("requests", "input-tokens", "output-tokens", "tokens")
    )


def _burst(headers: dict, name: str, params: LimiterParams) -> int | None:
    per_minute = _int_header(headers, name)
    return None if per_minute is None else int(capacity(per_minute, params.provider_burst_s))


def _int_header(headers: dict, name: str) -> int | None:
    raw = headers.get(name) if headers else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# --- The process side: priority queues, one poller per model, lease renewal -------------


def backend():
    """The module whose try_acquire, release, renew_leases and discard_lease hold the shared
    state: allocation.limiter_redis when settings.LLM_LIMITER_REDIS_URL is set, else this one
    (Postgres)."""
    if getattr(settings, "LLM_LIMITER_REDIS_URL", ""):
        from allocation import limiter_redis

        return limiter_redis
    return sys.modules[__name__]


class Permit:
    """Held for one call; the caller fills `outcome` before leaving the block."""

    def __init__(self):
        self.outcome = Outcome()


class SharedClock:
    """The backend server's time, read here as the local clock plus an offset measured now and
    then. Buckets and leases are shared between machines, so they must not each run on their
    own machine's clock; asking the server on every admission would cost a round trip."""

    def __init__(self):
        self._offset = 0.0
        self._measured_at = -math.inf

    async def now(self, params: "LimiterParams") -> float:
        local = time.monotonic()
        if local - self._measured_at > params.clock_refresh_s:
            before = time.time()
            server = await sync_to_async(backend().clock)()
            after = time.time()
            self._offset = server - (before + after) / 2
            self._measured_at = local
        return time.time() + self._offset


class GlobalLimiter:
    def __init__(self):
        self._clock = SharedClock()
        self._queues: dict[str, list] = {}
        self._pollers: dict[str, asyncio.Task] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._order = itertools.count()
        self._renewer: asyncio.Task | None = None

    @asynccontextmanager
    async def permit(self, model: str, *, input_estimate: int, priority: tuple = ()):
        params = get_params()
        lease_id = await self._acquire(model, input_estimate, priority, params)
        permit = Permit()
        try:
            yield permit
        finally:
            await sync_to_async(backend().release)(
                lease_id, model, permit.outcome, params=params, now=await self._clock.now(params)
            )
            self._wakeup(model).set()

    async def _acquire(self, model, input_estimate, priority, params) -> int:
        self._ensure_renewer(params)
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._queues.setdefault(model, []),
            (priority, next(self._order), input_estimate, future),
        )
        poller = self._pollers.get(model)
        if poller is None or poller.done():
            self._pollers[model] = asyncio.create_task(self._poll(model, params))
        return await future

    async def _poll(self, model: str, params: LimiterParams):
        queue = self._queues[model]
        wakeup = self._wakeup(model)
        while queue:
            entry = queue[0]
            future, input_estimate = entry[3], entry[2]
            if future.done():  # its caller was cancelled
                _remove(queue, entry)
                continue
            # Cleared before asking, so a release that lands while we ask is not missed.
            wakeup.clear()
            try:
                attempt = await sync_to_async(backend().try_acquire)(
                    model,
                    input_estimate=input_estimate,
                    params=params,
                    now=await self._clock.now(params),
                )
            except Exception as exc:  # noqa: BLE001 - hand the database error to the caller
                attempt = exc
            # A caller with a higher priority may have joined meanwhile: settle the entry we
            # asked for, not whatever is at the head now.
            if isinstance(attempt, Exception):
                _remove(queue, entry)
                if not future.done():
                    future.set_exception(attempt)
            elif attempt.lease_id is not None:
                _remove(queue, entry)
                if future.done():  # cancelled while we asked: give the slot straight back
                    await sync_to_async(backend().discard_lease)(attempt.lease_id)
                else:
                    future.set_result(attempt.lease_id)
            elif attempt.breaker_open:
                _remove(queue, entry)
                if not future.done():
                    future.set_exception(BreakerOpen(model))
            else:
                # A local release wakes us early; a slot freed by another process needs a poll.
                wait = min(params.max_wait_s, max(attempt.wait_s, 0.001))
                with suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=wait)

    def _wakeup(self, model: str) -> asyncio.Event:
        return self._wakeups.setdefault(model, asyncio.Event())

    def _ensure_renewer(self, params: LimiterParams):
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(params))

    async def _renew_forever(self, params: LimiterParams):
        while True:
            await asyncio.sleep(params.lease_ttl_s / 3)
            try:
                now = await self._clock.now(params)
                await sync_to_async(backend().renew_leases)(params, now)
            except Exception:  # noqa: BLE001 - try again next round; leases outlive one miss
                logger.exception("could not renew leases")


def _remove(queue: list, entry: tuple) -> None:
    queue.remove(entry)
    heapq.heapify(queue)


_limiters: dict[int, GlobalLimiter] = {}


def get_limiter() -> GlobalLimiter:
    """One limiter per event loop (its queues and tasks belong to that loop)."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(id(loop))
    if limiter is None:
        limiter = _limiters[id(loop)] = GlobalLimiter()
    return limiter
