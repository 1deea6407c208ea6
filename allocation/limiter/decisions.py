"""The limiter's decisions: pure functions on a LimiterState, shared by every backend.

Each takes the model's state, changes it in place and returns what the backend needs to know;
loading, locking and storing are the backend's. The arithmetic itself lives in the modules
these combine: admission.py (buckets), adaptive_limit.py (AIMD), circuit_breaker.py.
"""

from dataclasses import replace

from allocation.adaptive_limit import AimdLimit
from allocation.circuit_breaker import CircuitBreaker
from allocation.limiter.buckets import Buckets, Decision, Limits, admit, capacity, refill, settle
from allocation.limiter.params import LimiterParams
from allocation.limiter.state import CallCost, CallReport, LimiterState, Wait
from allocation.outcomes import CallOutcome
from allocation.retry_policy import retry_after_from_headers


def ask_breaker(state: LimiterState, params: LimiterParams, now: float) -> tuple[bool, str | None]:
    """May a call go to the model now? Returns (allowed, the LimitChange reason if it moved)."""
    breaker = CircuitBreaker.from_dict(state.breaker, params.breaker)
    before = breaker.state
    allowed = breaker.allow(now)
    # Stored even when the state stays put: a half-open breaker counts its probes.
    state.breaker = breaker.to_dict()
    return allowed, (f"breaker_{breaker.state}" if breaker.state != before else None)


def decide_admission(
    state: LimiterState,
    limits: Limits,
    *,
    in_flight: int,
    input_estimate: int,
    params: LimiterParams,
    now: float,
    output_reserve: int = 0,
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
        reserve_within_s=params.reserve_s,
        output_reserve=output_reserve,
    )
    _store_buckets(state, buckets)
    return decision


def apply_outcome(
    state: LimiterState,
    limits: Limits | None,
    report: CallReport,
    *,
    input_estimate: int,
    in_flight: int,
    params: LimiterParams,
    now: float,
    output_reserved: int = 0,
) -> str | None:
    """Settle a finished call into the buckets, the controller and the breaker.

    Returns the LimitChange reason when the limit or the breaker moved, else None.
    """
    outcome = CallOutcome(report.outcome)
    if limits is not None:
        buckets = _buckets(state, limits, params, now)
        settle(
            buckets,
            input_estimate=input_estimate,
            input_used=report.input_tokens,
            output_used=report.output_tokens,
            output_reserved=output_reserved,
        )
        if outcome == CallOutcome.RATE_LIMITED:
            # The provider counted differently from us: trust it and start from empty.
            buckets.requests = min(buckets.requests, 0.0)
        _store_buckets(state, buckets)

    controller = AimdLimit.from_dict(state.adaptive, params.aimd)
    limit_before = controller.limit
    # Seconds per output token: comparable between short and long answers.
    rtt = (
        report.latency_s / max(report.output_tokens, 1)
        if outcome == CallOutcome.OK
        else report.latency_s
    )
    headers = report.headers or {}
    if not (outcome == CallOutcome.RATE_LIMITED and _bucket_exhausted(headers)):
        # A 429 with an empty request or token bucket is a rate problem, which the buckets
        # above now correct; only an unexplained 429 (too many at once) cuts concurrency.
        controller.on_sample(now=now, rtt_s=rtt, in_flight=in_flight, outcome=outcome)
    retry_after = retry_after_from_headers(headers, now=now) if headers else None
    # "remaining" is what is left in the provider's bucket, which holds a burst's worth of
    # the per-minute limit the "limit" header names: compare like with like.
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
    if outcome == CallOutcome.OK:
        breaker.record_success(now)
    elif outcome.is_failure:
        breaker.record_failure(now)
    state.breaker = breaker.to_dict()
    if controller.limit != limit_before:
        return controller.snapshot()["last_reason"]
    if breaker.state != breaker_before:
        return f"breaker_{breaker.state}"
    return None


def give_back_reservation(
    state: LimiterState, limits: Limits, *, output_reserved: int, params: LimiterParams, now: float
) -> None:
    """An ignored call (cancelled, or our own bug): its output reservation returns whole. Its
    input stays charged: the request may have reached the provider."""
    buckets = _buckets(state, limits, params, now)
    settle(buckets, input_estimate=0, input_used=0, output_used=0, output_reserved=output_reserved)
    _store_buckets(state, buckets)


def next_admission_in(
    state: LimiterState,
    limits: Limits,
    cost: CallCost,
    *,
    in_flight: int,
    params: LimiterParams,
    now: float,
) -> Decision:
    """What asking for `cost` now would answer, changing nothing: how long a waiting call
    should sleep before asking (0: ask now), and what it would wait for."""
    return decide_admission(
        replace(state),
        limits,
        in_flight=in_flight,
        input_estimate=cost.input_tokens,
        output_reserve=cost.max_tokens,
        params=params,
        now=now,
    )


def _buckets(state: LimiterState, limits: Limits, params: LimiterParams, now: float) -> Buckets:
    if state.refilled_at == 0:
        return Buckets.full(limits, params.burst_s, now)
    buckets = Buckets(
        state.request_tokens, state.input_tokens, state.output_tokens, state.refilled_at
    )
    refill(buckets, limits, burst_s=params.burst_s, now=now)
    return buckets


def _store_buckets(state: LimiterState, buckets: Buckets) -> None:
    state.request_tokens = buckets.requests
    state.input_tokens = buckets.input_tokens
    state.output_tokens = buckets.output_tokens
    state.refilled_at = buckets.refilled_at


def _bucket_exhausted(headers) -> bool:
    return any(
        _int_header(headers, f"anthropic-ratelimit-{kind}-remaining") == 0
        for kind in ("requests", "input-tokens", "output-tokens", "tokens")
    )


def _burst(headers, name: str, params: LimiterParams) -> int | None:
    per_minute = _int_header(headers, name)
    return None if per_minute is None else int(capacity(per_minute, params.provider_burst_s))


def _int_header(headers, name: str) -> int | None:
    raw = headers.get(name) if headers else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# How long the record of waits goes back (the advisor's "last hour").
BOUND_HISTORY_S = 3600


def record_waits(state: LimiterState, waits: list[Wait], *, now: float) -> None:
    """Add what calls waited for to the model's record: seconds per limit per minute. Waits
    of several processes overlap; each moment is counted once per limit."""
    if not waits:
        return
    minutes = state.bound.setdefault("minutes", {})
    until = state.bound.setdefault("until", {})
    for wait in waits:
        start = max(wait.start, until.get(wait.limit, 0.0))
        if wait.end <= start:
            continue
        until[wait.limit] = wait.end
        while start < wait.end:
            minute = int(start // 60) * 60
            stop = min(wait.end, minute + 60)
            counts = minutes.setdefault(str(minute), {})
            counts[wait.limit] = round(counts.get(wait.limit, 0.0) + stop - start, 3)
            start = stop
    oldest = now - BOUND_HISTORY_S - 60
    for minute in [m for m in minutes if int(m) < oldest]:
        del minutes[minute]


def seconds_bound(state: LimiterState, *, since: float) -> dict[str, float]:
    """Seconds the model's calls waited for each limit since `since` (whole minutes)."""
    totals: dict[str, float] = {}
    for minute, counts in (state.bound or {}).get("minutes", {}).items():
        if int(minute) + 60 > since:
            for limit, seconds in counts.items():
                totals[limit] = totals.get(limit, 0.0) + seconds
    return totals
