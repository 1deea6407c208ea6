"""The usage log: one LLMCall row per provider attempt, priced as it is written."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from allocation.models import LLMCall
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage, cost_of


@dataclass(frozen=True)
class Attempt:
    """What one call to the provider did, as the caller saw it."""

    task_type: str
    requested_model: str
    model: str
    outcome: CallOutcome
    attempt: int
    is_retry: bool
    is_fallback: bool
    latency_s: float
    started_at: datetime
    usage: TokenUsage = TokenUsage()
    status_code: int | None = None
    request_id: str = ""
    error: str = ""


def record_call(attempt: Attempt, *, reading_id=None, task_id=None, spread_id=None) -> LLMCall:
    # A refused or broken call used nothing; an answer refused as invalid was still paid for.
    billed = attempt.outcome == CallOutcome.OK or attempt.usage.output_tokens > 0
    cost = cost_of(attempt.model, attempt.usage) if billed else Decimal(0)
    return LLMCall.objects.create(
        reading_id=reading_id,
        task_id=task_id,
        spread_id=spread_id,
        task_type=attempt.task_type,
        requested_model=attempt.requested_model,
        model=attempt.model,
        outcome=attempt.outcome,
        status_code=attempt.status_code,
        attempt=attempt.attempt,
        is_retry=attempt.is_retry,
        is_fallback=attempt.is_fallback,
        input_tokens=attempt.usage.input_tokens,
        output_tokens=attempt.usage.output_tokens,
        cache_read_tokens=attempt.usage.cache_read_tokens,
        cache_write_tokens=attempt.usage.cache_write_tokens,
        cache_write_5m_tokens=attempt.usage.cache_write_5m_tokens,
        cache_write_1h_tokens=attempt.usage.cache_write_1h_tokens,
        batched=attempt.usage.batched,
        cost_usd=cost,
        latency_s=attempt.latency_s,
        request_id=attempt.request_id,
        error=attempt.error[:2000],
        started_at=attempt.started_at,
    )
