"""Whether one more call to a model may start now: pure arithmetic, no I/O.

Token buckets refill continuously at the provider's per-minute rates, holding at most
`burst_s` seconds of refill: Anthropic may enforce a per-minute limit over shorter intervals,
so a whole minute's requests must not go out in one burst. Input tokens are charged on
admission from an estimate and reconciled with the real usage afterwards. Output tokens are
charged as Anthropic charges them: the call's whole `max_tokens` on admission (its answer's
length is unknown until it ends), and the unused part given back when it is settled. A
bucket in debt admits nothing until it has refilled.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int
    max_concurrent_calls: int


@dataclass
class Buckets:
    requests: float
    input_tokens: float
    output_tokens: float
    refilled_at: float

    @classmethod
    def full(cls, limits: Limits, burst_s: float, now: float) -> "Buckets":
        return cls(
            requests=capacity(limits.requests_per_minute, burst_s),
            input_tokens=capacity(limits.input_tokens_per_minute, burst_s),
            output_tokens=capacity(limits.output_tokens_per_minute, burst_s),
            refilled_at=now,
        )


@dataclass(frozen=True)
class Decision:
    admitted: bool
    # Refused: how long to wait before asking again. Admitted: how long the call must wait
    # before it goes (a reserved request token, see admit()).
    wait_s: float = 0.0
    reason: str = ""
    # Admitted: how long until asking again could admit (or reserve) another call. Advice
    # derived from the buckets, not part of the decision itself.
    next_in_s: float = field(default=0.0, compare=False)


def capacity(per_minute: int, burst_s: float) -> float:
    # At least one whole unit, or a slow limit could never admit anything.
    return max(1.0, per_minute / 60.0 * burst_s)


def refill(buckets: Buckets, limits: Limits, *, burst_s: float, now: float) -> None:
    elapsed = max(0.0, now - buckets.refilled_at)
    for name, per_minute in (
        ("requests", limits.requests_per_minute),
        ("input_tokens", limits.input_tokens_per_minute),
        ("output_tokens", limits.output_tokens_per_minute),
    ):
        level = getattr(buckets, name) + per_minute / 60.0 * elapsed
        setattr(buckets, name, min(capacity(per_minute, burst_s), level))
    # max(): machines whose clocks disagree must not wind the refill clock back and count
    # the same seconds twice.
    buckets.refilled_at = max(buckets.refilled_at, now)


def admit(
    buckets: Buckets,
    limits: Limits,
    *,
    in_flight: int,
    concurrency_limit: int,
    input_estimate: int,
    paused_until: float,
    burst_s: float,
    now: float,
    reserve_within_s: float = 0.0,
    output_reserve: int = 0,
) -> Decision:
    """Admit (and charge) one call, or say how long to wait before asking again.
    `output_reserve`: the call's max_tokens, held in the output bucket until it is settled
    (0: unknown, the call only needs a bucket that is not in debt)."""
    if now < paused_until:
        return Decision(False, paused_until - now, "paused")
    if in_flight >= min(concurrency_limit, limits.max_concurrent_calls):
        return Decision(False, 0.0, "concurrency")
    # The next request token, if it is due within `reserve_within_s`, is taken now and the
    # call waits for it (golang.org/x/time/rate's Reserve): whoever asks when a token is due
    # gets it in one step instead of being refused and asking again.
    delay = max(0.0, (1 - buckets.requests) / per_second(limits.requests_per_minute))
    if delay > reserve_within_s:
        return Decision(False, delay - reserve_within_s, "rpm")
    # A prompt larger than the bucket waits for a full bucket, then leaves a debt.
    needed = min(input_estimate, capacity(limits.input_tokens_per_minute, burst_s))
    if buckets.input_tokens < needed:
        deficit = needed - buckets.input_tokens
        return Decision(False, deficit / per_second(limits.input_tokens_per_minute), "itpm")
    # The same rule for the reservation: a max_tokens above the bucket waits for a full one.
    needed = min(max(output_reserve, 1), capacity(limits.output_tokens_per_minute, burst_s))
    if buckets.output_tokens < needed:
        deficit = needed - buckets.output_tokens
        return Decision(False, deficit / per_second(limits.output_tokens_per_minute), "otpm")
    buckets.requests -= 1
    buckets.input_tokens -= input_estimate
    buckets.output_tokens -= output_reserve
    next_in = (1 - buckets.requests) / per_second(limits.requests_per_minute) - reserve_within_s
    return Decision(True, wait_s=delay, reason="reserved" if delay else "", next_in_s=next_in)


def settle(
    buckets: Buckets,
    *,
    input_estimate: int,
    input_used: int,
    output_used: int,
    output_reserved: int = 0,
) -> None:
    """Charge what the call really used, now that it is known: the input estimate corrected,
    the unused part of the output reservation given back at once (as Anthropic corrects its
    max_tokens estimate when a call ends)."""
    buckets.input_tokens += input_estimate - input_used
    buckets.output_tokens += output_reserved - output_used


def per_second(per_minute: int) -> float:
    return per_minute / 60.0
