"""POST /api/readings/<id>/retry/ and the reading page's button: a reading that failed late
is finished by running only what it had not finished; nothing written is paid for twice."""

from decimal import Decimal

import pytest

from allocation.models import LLMCall, ModelAllocation
from budgets.models import Reservation, ReservationState
from budgets.services import with_margin
from readings.engine import run_reading_sync
from readings.models import Reading, ReadingEvent, ReadingStatus, TaskStatus
from readings.services import reading_create
from spreads.models import TaskType
from tests.readings.api.conftest import THREE_CARDS, client_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# Advice alone on a model the emulator can take down, with nothing to fall back to.
ADVICE_MODEL = "claude-opus-4-1"


def failed_at_advice(emulator, owner):
    """A three-card reading whose cards and overall reading were written and paid for, and
    whose advice failed: the provider was down for its model."""
    ModelAllocation.objects.filter(task_type=TaskType.ADVICE).update(
        model=ADVICE_MODEL, fallback_models=""
    )
    emulator.configure(failing_models=frozenset({ADVICE_MODEL}))
    reading = reading_create(
        owner=owner, spread="three_card", question="Will it hold?", cards=THREE_CARDS
    )
    reading = run_reading_sync(reading.pk)
    assert reading.status == ReadingStatus.FAILED
    emulator.configure(failing_models=frozenset())
    return reading


def paid_calls(reading) -> dict:
    return {
        task.task_type: LLMCall.objects.filter(task=task).count() for task in reading.tasks.all()
    }


def test_a_reading_that_failed_late_finishes_without_paying_twice(emulator, bob):
    reading = failed_at_advice(emulator, bob)
    before = paid_calls(reading)
    done_before = set(
        reading.tasks.filter(status=TaskStatus.DONE).values_list("task_type", flat=True)
    )
    assert TaskType.ADVICE not in done_before and TaskType.CARD_INTERPRETATION in done_before

    response = client_for(bob).post(f"/api/readings/{reading.pk}/retry/")

    assert response.status_code == 202
    assert response.json()["status"] == ReadingStatus.QUEUED
    assert response["Location"].endswith(f"/api/readings/{reading.pk}/")
    # The failed run's reading_finished event is gone: a viewer waits for this run's.
    assert not ReadingEvent.objects.filter(reading=reading).exists()
    finished = run_reading_sync(reading.pk)  # what the worker does with the queued job
    assert finished.status == ReadingStatus.DONE
    assert finished.error == ""
    after = paid_calls(finished)
    for task_type in done_before:
        assert after[task_type] == before[task_type]  # not run again
    assert after[TaskType.ADVICE] == before[TaskType.ADVICE] + 1  # one call, which answered
    assert finished.tasks.get(task_type=TaskType.ADVICE).output


def test_only_a_failed_reading_can_be_retried(bob):
    reading = reading_create(owner=bob, spread="three_card", question="Now?", cards=THREE_CARDS)

    response = client_for(bob).post(f"/api/readings/{reading.pk}/retry/")

    assert response.status_code == 409
    assert "Only a failed reading can be retried; this one is queued." in response.json()["detail"]


def test_someone_elses_reading_cannot_be_retried_but_staff_may(emulator, bob, charlie, alice):
    reading = failed_at_advice(emulator, bob)

    assert client_for(charlie).post(f"/api/readings/{reading.pk}/retry/").status_code == 404
    assert Reading.objects.get(pk=reading.pk).status == ReadingStatus.FAILED
    assert client_for(alice).post(f"/api/readings/{reading.pk}/retry/").status_code == 202


def test_a_retry_is_admitted_for_the_tasks_left_and_keeps_what_was_spent(emulator, bob, budget_for):
    budget_for(user=bob, limit=Decimal("5"))
    reading = failed_at_advice(emulator, bob)
    spent = Reservation.objects.get(reading=reading).spent_usd
    assert spent > 0

    assert client_for(bob).post(f"/api/readings/{reading.pk}/retry/").status_code == 202

    held = Reservation.objects.get(reading=reading)
    # Only the advice is left: the reading is claimed at what the advice is expected to cost.
    advice = Decimal(reading.cost_estimate.sources["advice:0"]["expected_usd"])
    assert (held.state, held.spent_usd) == (ReservationState.HELD, spent)
    assert held.claim_usd == with_margin(advice) == held.ledger.reserved_usd
    run_reading_sync(reading.pk)
    settled = Reservation.objects.get(reading=reading)
    assert settled.state == ReservationState.RELEASED
    assert settled.spent_usd > spent  # the advice's call, on top of the first run's
    assert settled.ledger.spent_usd == settled.spent_usd


def test_a_retry_the_budget_cannot_take_is_refused_with_402(emulator, bob, budget_for):
    budget = budget_for(user=bob, limit=Decimal("5"))
    reading = failed_at_advice(emulator, bob)
    budget.limit_usd = budget.ledgers.get().spent_usd + Decimal("0.0001")
    budget.save()

    response = client_for(bob).post(f"/api/readings/{reading.pk}/retry/")

    assert response.status_code == 402
    assert "cannot take this reading" in response.json()["detail"]
    assert Reading.objects.get(pk=reading.pk).status == ReadingStatus.FAILED


def test_the_reading_page_offers_the_retry_and_queues_it(emulator, bob, client):
    reading = failed_at_advice(emulator, bob)
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/").content.decode()
    assert 'class="status errors"' in page  # a failure reads as one
    assert 'id="retry"' in page and f'action="/readings/{reading.pk}/retry/"' in page
    assert f'id="retry" method="post" action="/readings/{reading.pk}/retry/" hidden' not in page

    response = client.post(f"/readings/{reading.pk}/retry/")

    assert response.status_code == 302
    assert response["Location"] == f"/readings/{reading.pk}/"
    assert Reading.objects.get(pk=reading.pk).status == ReadingStatus.QUEUED
    assert run_reading_sync(reading.pk).status == ReadingStatus.DONE


def test_the_reading_page_says_why_a_retry_is_refused(bob, client):
    reading = reading_create(owner=bob, spread="three_card", question="Now?", cards=THREE_CARDS)
    client.force_login(bob)

    page = client.post(f"/readings/{reading.pk}/retry/", follow=True).content.decode()

    assert "Only a failed reading can be retried" in page
