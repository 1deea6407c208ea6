"""Shared makers for the cost report tests: LLM calls at chosen moments."""

from datetime import UTC, datetime
from decimal import Decimal

from allocation.models import CallOutcome, LLMCall
from spreads.models import TaskType


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD HH:MM[:SS[.ffffff]]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_call(
    when: datetime,
    *,
    cost: str = "0",
    task_type: str = TaskType.CARD_INTERPRETATION,
    model: str = "claude-haiku-4-5",
    spread=None,
    reading=None,
    outcome: str = CallOutcome.OK,
    is_fallback: bool = False,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    requested_model: str | None = None,
    batched: bool = False,
) -> LLMCall:
    call = LLMCall.objects.create(
        reading=reading,
        spread=spread,
        task_type=task_type,
        requested_model=requested_model or model,
        model=model,
        outcome=outcome,
        is_fallback=is_fallback,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        # cache_write_tokens are 5-minute writes; the column holds both TTLs.
        cache_write_tokens=cache_write_tokens + cache_write_1h_tokens,
        cache_write_5m_tokens=cache_write_tokens,
        cache_write_1h_tokens=cache_write_1h_tokens,
        batched=batched,
        cost_usd=Decimal(cost),
        latency_s=1.0,
        started_at=when,
    )
    # created_at is auto_now_add: move it to the moment the test needs.
    LLMCall.objects.filter(pk=call.pk).update(created_at=when)
    call.created_at = when
    return call
