"""The usage log: one LLMCall row per provider attempt, priced as it is written.

The row is opened as pending just before the request leaves (open_call, or opening's
statement, which the limiter runs in the transaction that admits the call) and completed when
the answer comes (record_call): one insert and one update per call, so a worker killed with
the request in flight leaves a row recovery can book as lost (the worker's recovery).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from allocation.limiter.holder import current_holder
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
    # The pending row open_call wrote for this attempt; None: no row yet (one is created).
    call_id: int | None = None


def open_call(attempt: Attempt, *, reading_id=None, task_id=None, spread_id=None) -> int:
    """The attempt's row, pending, before the request leaves: the usage says how many input
    tokens the request is estimated at, what a lost call is priced from."""
    call = _pending(attempt, reading_id, task_id, spread_id)
    call.save(force_insert=True)
    return call.pk


def opening(attempt: Attempt, *, reading_id=None, task_id=None, spread_id=None):
    """open_call as one SQL statement and its parameters, returning the new row's id, for a
    caller that sends it with others in one transaction (the limiter's admission)."""
    call = _pending(attempt, reading_id, task_id, spread_id)
    fields = [f for f in LLMCall._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(call, add=True), connection) for f in fields]
    columns = ", ".join(f.column for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return (
        f"INSERT INTO {LLMCall._meta.db_table} ({columns}) VALUES ({placeholders}) RETURNING id",
        values,
    )


def forget_unsent(call_id: int) -> None:
    """Delete the pending row of a call that never left: its caller gave up after the limiter
    admitted it (and wrote the row), so nothing was sent and nothing may be booked."""
    LLMCall.objects.filter(pk=call_id, outcome=CallOutcome.PENDING).delete()


def _pending(attempt: Attempt, reading_id, task_id, spread_id) -> LLMCall:
    return LLMCall(
        **_ids(reading_id, task_id, spread_id),
        **_fields(attempt),
        cost_usd=Decimal(0),
        # The process sending it: recovery books its pending calls as lost if it dies.
        holder=current_holder(),
    )


def record_call(attempt: Attempt, *, reading_id=None, task_id=None, spread_id=None) -> LLMCall:
    """The attempt's row as it ended. `unsettled_usd` on the result is what budgets are still
    to be charged: the cost, less an estimate recovery already booked if it took this call
    for lost (its process looked dead) before the answer came."""
    fields = _priced_fields(attempt)
    cost = fields["cost_usd"]
    ids = _ids(reading_id, task_id, spread_id)
    if attempt.call_id is None:
        call = LLMCall.objects.create(**ids, **fields)
        call.unsettled_usd = cost
        return call
    completed = LLMCall.objects.filter(pk=attempt.call_id, outcome=CallOutcome.PENDING)
    if completed.update(**fields):
        call = LLMCall(pk=attempt.call_id, **ids, **fields)
        call.unsettled_usd = cost
        return call
    with transaction.atomic():
        call = LLMCall.objects.select_for_update().filter(pk=attempt.call_id).first()
        if call is None:  # deleted meanwhile (staff tidying the log): log it again
            call = LLMCall.objects.create(**ids, **fields)
            call.unsettled_usd = cost
            return call
        booked = call.cost_usd
        for name, value in {**fields, "cost_estimated": False}.items():
            setattr(call, name, value)
        call.save()
    call.unsettled_usd = cost - booked
    return call


def completing_pending(attempt: Attempt) -> tuple[str, list]:
    """record_call's usual case as one SQL statement, for a caller that sends it along with
    others in one message: the attempt's pending row (attempt.call_id) completed. It updates
    no row if the row is no longer pending (recovery booked it as lost); record_call then
    does what that case needs."""
    fields = _priced_fields(attempt)
    table = LLMCall._meta.db_table
    assignments = ", ".join(f"{name} = %s" for name in fields)
    return (
        f"UPDATE {table} SET {assignments} WHERE id = %s AND outcome = %s",
        [*fields.values(), attempt.call_id, CallOutcome.PENDING],
    )


def _priced_fields(attempt: Attempt) -> dict:
    # A refused or broken call used nothing; an answer refused as invalid was still paid for.
    billed = attempt.outcome == CallOutcome.OK or attempt.usage.output_tokens > 0
    cost = cost_of(attempt.model, attempt.usage) if billed else Decimal(0)
    return {**_fields(attempt), "cost_usd": cost}


def _ids(reading_id, task_id, spread_id) -> dict:
    return {"reading_id": reading_id, "task_id": task_id, "spread_id": spread_id}


def _fields(attempt: Attempt) -> dict:
    return dict(
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
        latency_s=attempt.latency_s,
        request_id=attempt.request_id,
        error=attempt.error[:2000],
        started_at=attempt.started_at,
    )
