"""Economy readings through the emulator's Message Batches API, via the real anthropic SDK.

The Schedule's job (economy.tick) is called here directly, as the worker's scheduler would.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from allocation.allocator import get_allocator
from allocation.models import CallOutcome, LLMCall
from allocation.pricing import TokenUsage, cost_of
from budgets.models import BudgetLedger
from readings import economy
from readings.models import (
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderBatch,
    Reading,
    ReadingStatus,
    ReadingTask,
    TaskStatus,
)
from readings.services import reading_create
from spreads.models import EconomyFallback, Spread, TaskType
from tests.polling import wait_for

# The fallback runs the engine on its own thread and connection: tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

QUESTION = "Where is my career going?"


@pytest.fixture
def batches(emulator):
    emulator.configure(batch_delay_s=0.1)
    economy._clients.clear()
    return emulator


def economy_reading(spread="celtic_cross", **kwargs):
    reading = reading_create(spread=spread, question=QUESTION, mode="economy", **kwargs)
    economy.start(reading.pk)
    return reading


def run_ticks(*readings, timeout_s=30.0) -> list[Reading]:
    """Tick as the Schedule would (faster) until every reading has ended."""
    ids = [r.pk for r in readings]

    def ticked_and_all_ended():
        economy.tick()
        return Reading.objects.filter(pk__in=ids, finished_at__isnull=False).count() == len(ids)

    wait_for(
        ticked_and_all_ended,
        timeout=timeout_s,
        what=f"{len(ids)} economy reading(s) to end, ticking as the Schedule would",
        explain=lambda: (
            "unfinished: "
            + ", ".join(
                f"{r.pk} ({r.status})" for r in Reading.objects.filter(pk__in=ids, finished_at=None)
            )
        ),
    )
    return [Reading.objects.get(pk=pk) for pk in ids]


def wait_until_the_provider_ended(batch: ProviderBatch) -> None:
    """Poll the provider (the emulator, through the SDK the worker uses) until `batch` has
    ended there: done, or expired."""
    wait_for(
        lambda: (
            economy.client().messages.batches.retrieve(batch.batch_id).processing_status == "ended"
        ),
        timeout=10,
        what=f"the provider to end batch {batch.batch_id}",
    )


def model_of(task_type, spread="celtic_cross"):
    return get_allocator().get_config(task_type, spread=Spread.objects.get(slug=spread)).model


def test_an_economy_reading_runs_every_task_in_batches_priced_at_half(batches):
    reading = economy_reading()

    (reading,) = run_ticks(reading)

    assert reading.status == ReadingStatus.DONE, reading.error
    assert all(t.status == TaskStatus.DONE and t.output for t in reading.tasks.all())
    calls = list(LLMCall.objects.filter(reading=reading))
    assert len(calls) == reading.tasks.count()
    for call in calls:
        assert call.batched and call.outcome == CallOutcome.OK
        full = TokenUsage(
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cache_read_tokens=call.cache_read_tokens,
            cache_write_5m_tokens=call.cache_write_5m_tokens,
            cache_write_1h_tokens=call.cache_write_1h_tokens,
        )
        assert call.cost_usd == pytest.approx(cost_of(call.model, full) / 2, abs=Decimal("1e-8"))
    assert reading.cost_usd == sum(c.cost_usd for c in calls)
    stats = batches.stats()
    assert stats["requests"] == 0  # not one standard Messages call
    assert stats["batch_requests"] == len(calls)


def test_the_due_calls_of_many_readings_share_one_batch_per_model_and_phase(batches):
    readings = [economy_reading() for _ in range(3)]

    accepted = economy.submit_due()

    # Phase 1 only (the card batches), all on the card model, all readings in one batch.
    assert [b.model for b in accepted] == [model_of(TaskType.CARD_INTERPRETATION)]
    assert accepted[0].request_count == sum(r.tasks.filter(phase=1).count() for r in readings)
    assert ReadingTask.objects.filter(phase=1, status=TaskStatus.RUNNING).count() == 12
    assert ReadingTask.objects.filter(phase__gt=1, status=TaskStatus.PENDING).count() == 9

    run_ticks(*readings)
    phase_models = (
        {(1, model_of(TaskType.CARD_INTERPRETATION))}
        | {(2, model_of(t)) for t in (TaskType.OVERALL_READING, TaskType.RELATIONSHIPS)}
        | {(3, model_of(TaskType.ADVICE))}
    )
    assert ProviderBatch.objects.count() == len(phase_models)


def test_a_restarted_worker_collects_the_pending_batch_and_never_submits_twice(batches):
    batches.configure(batch_delay_s=0.5)
    reading = economy_reading()
    (submitted,) = economy.submit_due()
    assert submitted.batch_id.startswith("msgbatch_")

    # The worker dies: nothing of this process survives but the database.
    economy._clients.clear()
    from django.db import connections

    connections.close_all()

    (reading,) = run_ticks(reading)

    assert reading.status == ReadingStatus.DONE
    tasks = list(reading.tasks.all())
    # One batch request per task, and the provider saw one creation per batch row.
    assert BatchRequest.objects.filter(task__reading=reading).count() == len(tasks)
    assert batches.stats()["batch_creates"] == ProviderBatch.objects.count()
    assert batches.stats()["batch_requests"] == len(tasks)


def test_collecting_the_same_ended_batch_twice_stores_each_result_once(batches):
    reading = economy_reading()
    (batch,) = economy.submit_due()
    wait_until_the_provider_ended(batch)

    assert economy.collect() == 1
    ProviderBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.IN_PROGRESS)
    economy.collect()

    assert LLMCall.objects.filter(reading=reading).count() == 4  # the four card batches
    assert reading.tasks.filter(phase=1, status=TaskStatus.DONE).count() == 4


def test_expired_requests_fall_back_to_standard_calls_when_staff_chose_that(batches):
    batches.configure(batch_delay_s=5, batch_expiry_s=0.1)
    reading = economy_reading()

    (reading,) = run_ticks(reading)

    assert reading.status == ReadingStatus.DONE, reading.error
    expired = LLMCall.objects.filter(reading=reading, batched=True)
    standard = LLMCall.objects.filter(reading=reading, batched=False)
    assert expired.count() == standard.count() == reading.tasks.count()
    assert {c.outcome for c in expired} == {CallOutcome.TIMEOUT}
    assert {c.cost_usd for c in expired} == {Decimal(0)}
    assert {c.outcome for c in standard} == {CallOutcome.OK}
    assert set(BatchRequest.objects.values_list("result", flat=True)) == {BatchResult.EXPIRED}


def test_an_errored_request_fails_the_reading_with_its_message_when_staff_chose_that(batches):
    Spread.objects.filter(slug="celtic_cross").update(economy_fallback=EconomyFallback.FAIL)
    batches.configure(failing_models=model_of(TaskType.CARD_INTERPRETATION))
    reading = economy_reading()

    (reading,) = run_ticks(reading)

    assert reading.status == ReadingStatus.FAILED
    assert "batch request errored: api_error" in reading.error
    assert "injected by the emulator" in reading.error
    assert not reading.tasks.filter(phase__gt=1).exclude(status=TaskStatus.PENDING).exists()
    assert batches.stats()["requests"] == 0  # no standard call was made


def test_a_batch_the_provider_rejects_whole_fails_its_readings_with_the_message(batches):
    batches.configure(force_batch_rejects=1)
    readings = [economy_reading(), economy_reading()]

    assert economy.submit_due() == []

    for reading in readings:
        reading.refresh_from_db()
        assert reading.status == ReadingStatus.FAILED
        assert "the provider refused its batch: 400 Forced batch rejection" in reading.error
    (batch,) = ProviderBatch.objects.all()
    assert batch.status == BatchStatus.REJECTED and "Forced batch rejection" in batch.error


def test_a_batch_that_cannot_reach_the_provider_is_submitted_again(batches, settings):
    reading = economy_reading()
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"  # nothing listens there

    assert economy.submit_due() == []
    assert reading.tasks.filter(phase=1, status=TaskStatus.PENDING).count() == 4

    settings.ANTHROPIC_BASE_URL = batches.base_url
    (reading,) = run_ticks(reading)

    assert reading.status == ReadingStatus.DONE
    assert ProviderBatch.objects.filter(status=BatchStatus.REJECTED).count() == 1


def test_budgets_hold_an_economy_reading_and_settle_its_discounted_calls(batches, bob, budget_for):
    budget = budget_for(user=bob, limit=Decimal("5"))
    reading = economy_reading(owner=bob)
    ledger = BudgetLedger.objects.get(budget=budget)
    assert ledger.reserved_usd > 0

    (reading,) = run_ticks(reading)

    ledger.refresh_from_db()
    assert reading.status == ReadingStatus.DONE
    assert ledger.spent_usd == reading.cost_usd > 0
    assert ledger.reserved_usd == 0


def test_the_job_of_an_economy_reading_only_starts_it(batches):
    from worker.tasks import reading_job

    reading = reading_create(spread="celtic_cross", question=QUESTION, mode="economy")

    assert reading_job(str(reading.pk)) == ReadingStatus.RUNNING
    assert reading.tasks.filter(status=TaskStatus.PENDING).count() == 7
    assert batches.stats()["batch_creates"] == batches.stats()["requests"] == 0


def test_a_standard_fallback_left_running_by_a_dead_tick_runs_again(batches):
    batches.configure(batch_delay_s=5, batch_expiry_s=0.1)
    reading = economy_reading()
    (batch,) = economy.submit_due()
    wait_until_the_provider_ended(batch)  # past its expiry, long before its delay
    assert economy.collect() == 1  # every card batch expired: each is due a standard call
    # A tick claimed them and died before its calls returned.
    stale = timezone.now() - timedelta(hours=1)
    reading.tasks.filter(phase=1).update(status=TaskStatus.RUNNING, started_at=stale)

    (reading,) = run_ticks(reading)

    assert reading.status == ReadingStatus.DONE, reading.error
    assert LLMCall.objects.filter(reading=reading, batched=False, task__phase=1).count() == 4


def test_the_worker_ticks_every_minute_from_a_schedule():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="economy-batches")

    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "readings.economy.tick",
        Schedule.MINUTES,
        1,
        -1,
    )
