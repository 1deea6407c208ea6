"""Where the engine meets the database: what a run of a reading may take for itself."""

from dataclasses import replace
from decimal import Decimal

import pytest
from django.utils import timezone

from allocation.models import CallOutcome, LLMCall
from allocation.pricing import TokenUsage, cost_of
from allocation.usage import Attempt
from readings import store
from readings.models import EventKind, ReadingEvent, TaskStatus
from readings.services import reading_create
from worker import recovery

# begin() opens the run as the worker does, on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_phase_claims_only_the_tasks_no_run_has_done_or_holds():
    reading = reading_create(spread="celtic_cross", question="Where is my career going?")
    state = store.begin(reading.pk)
    done, held, *free = [t for t in state.tasks if t.phase == 1]
    done.status = TaskStatus.DONE
    done.save()
    held.status = TaskStatus.RUNNING  # another run of the reading holds it
    held.save()

    claimed = store.claim_tasks([t.pk for t in (done, held, *free)])

    assert claimed == {t.pk for t in free}
    statuses = dict(reading.tasks.values_list("pk", "status"))
    assert [statuses[t.pk] for t in free] == [TaskStatus.RUNNING] * len(free)
    assert statuses[done.pk] == TaskStatus.DONE
    # Claimed again (a second run asking for the same phase): none of them.
    assert store.claim_tasks([t.pk for t in free]) == set()


def test_a_phase_nobody_else_touched_is_claimed_whole():
    reading = reading_create(spread="celtic_cross", question="Where is my career going?")
    phase_1 = [t.pk for t in store.begin(reading.pk).tasks if t.phase == 1]

    assert store.claim_tasks(phase_1) == set(phase_1)


def answered(task, model: str, call_id: int, usage: TokenUsage, *, attempt: int = 1) -> Attempt:
    return Attempt(
        task_type=task.task_type,
        requested_model=model,
        model=model,
        outcome=CallOutcome.OK,
        attempt=attempt,
        is_retry=attempt > 1,
        is_fallback=False,
        latency_s=1.5,
        started_at=timezone.now(),
        usage=usage,
        call_id=call_id,
    )


def running_task_with_its_call_sent(attempt: int = 1):
    """A reading's first task, claimed, and its call's pending row (as the engine opens it)."""
    reading = reading_create(spread="celtic_cross", question="Where is my career going?")
    state = store.begin(reading.pk)
    task = state.tasks[0]
    store.claim_tasks([task.pk])
    model = state.configs[task.task_type].model
    sent = answered(task, model, None, TokenUsage(input_tokens=1_000), attempt=attempt)
    pending = replace(sent, outcome=CallOutcome.PENDING, latency_s=0.0)
    call_id = store.open_attempt(
        pending, reading_id=reading.pk, task_id=task.pk, spread_id=reading.spread_id
    )
    return reading, task, model, call_id


def test_a_task_ends_with_its_answer_its_calls_cost_and_its_viewers_told():
    reading, task, model, call_id = running_task_with_its_call_sent(attempt=2)
    # An earlier attempt of the task failed, and was paid for (an answer in the wrong form).
    failed = LLMCall.objects.create(
        reading=reading,
        task=task,
        task_type=task.task_type,
        requested_model=model,
        model=model,
        outcome=CallOutcome.ERROR,
        output_tokens=50,
        cost_usd=Decimal("0.00125"),
        latency_s=1.0,
        started_at=timezone.now(),
    )
    usage = TokenUsage(input_tokens=1_000, output_tokens=400)

    store.finish_task(
        task.pk,
        output="The Tower: a sudden change.",
        texts={1: "A sudden change."},
        model=model,
        attempts=2,
        reading_id=reading.pk,
        answered_by=answered(task, model, call_id, usage, attempt=2),
        spread_id=reading.spread_id,
    )

    call = LLMCall.objects.get(pk=call_id)
    assert (call.outcome, call.output_tokens, call.latency_s) == (CallOutcome.OK, 400, 1.5)
    assert call.cost_usd == cost_of(model, usage) > 0
    task.refresh_from_db()
    assert (task.status, task.output, task.texts) == (
        TaskStatus.DONE,
        "The Tower: a sudden change.",
        {"1": "A sudden change."},
    )
    assert task.cost_usd == call.cost_usd + failed.cost_usd
    assert task.finished_at is not None
    [finished] = ReadingEvent.objects.filter(reading=reading, kind=EventKind.TASK_FINISHED)
    assert finished.data == {
        "task": task.pk,
        "status": TaskStatus.DONE,
        "texts": {"1": "A sudden change."},
    }


def test_an_answer_to_a_call_booked_as_lost_meanwhile_replaces_the_estimate_as_the_task_ends():
    reading, task, model, call_id = running_task_with_its_call_sent()
    # Recovery took this worker for dead while the answer was on its way.
    assert recovery.book_lost(call_id, timezone.now())
    usage = TokenUsage(input_tokens=1_000, output_tokens=400)

    store.finish_task(
        task.pk,
        output="The Tower: a sudden change.",
        model=model,
        attempts=1,
        reading_id=reading.pk,
        answered_by=answered(task, model, call_id, usage),
        spread_id=reading.spread_id,
    )

    call = LLMCall.objects.get(pk=call_id)
    assert (call.outcome, call.cost_estimated) == (CallOutcome.OK, False)
    assert call.cost_usd == cost_of(model, usage)
    task.refresh_from_db()
    assert (task.status, task.cost_usd) == (TaskStatus.DONE, call.cost_usd)
    assert LLMCall.objects.filter(task=task).count() == 1
    assert ReadingEvent.objects.filter(reading=reading, kind=EventKind.TASK_FINISHED).count() == 1
