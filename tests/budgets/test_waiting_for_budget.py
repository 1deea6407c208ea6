"""A reading whose next phase does not fit in its budget waits, visibly, instead of failing,
and goes on when there is room: the engine run for real against the emulator."""

import threading
from decimal import Decimal

import pytest

from budgets.models import Budget, BudgetAlert
from budgets.selectors import standing
from readings.engine import run_reading_sync
from readings.models import EventKind, Reading, ReadingEvent, ReadingStatus, TaskStatus
from readings.services import reading_create
from tests.budgets.three_cards import THREE_CARDS, admission_of_three_cards
from tests.polling import wait_for
from tests.readings.api.conftest import client_for

# The engine runs on its own thread and connection, so tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_phase_without_room_waits_for_budget_and_goes_on_when_the_limit_is_raised(
    emulator, bob, budget_for, settings
):
    settings.BUDGET_WAIT_POLL_S = 1
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=asks.room_usd)
    reading = reading_create(owner=bob, spread="three_card", question="Race?", cards=THREE_CARDS)
    # Staff lower the limit after it was admitted: room for what the reading is expected to
    # spend, not for its second phase's worst case.
    Budget.objects.filter(pk=budget.pk).update(limit_usd=asks.expected_usd + Decimal("0.0001"))

    runner = threading.Thread(target=run_reading_sync, args=(reading.pk,))
    runner.start()
    try:
        wait_for(
            lambda: Reading.objects.get(pk=reading.pk).status == ReadingStatus.WAITING_FOR_BUDGET,
            timeout=30,
            what="the reading to wait for budget",
        )
        # The querent and staff see it waiting; the phase that does not fit has not started.
        body = client_for(bob).get(f"/api/readings/{reading.pk}/").json()
        assert body["status"] == "waiting_for_budget"
        assert reading.tasks.get(task_type="card_interpretation").status == TaskStatus.DONE
        assert not reading.tasks.exclude(task_type="card_interpretation").exclude(
            status=TaskStatus.PENDING
        )
        said = ReadingEvent.objects.filter(reading=reading, kind=EventKind.STATUS).last()
        assert said.data["status"] == "waiting_for_budget"
        assert "cannot take this reading" in said.data["detail"]
        assert BudgetAlert.objects.get(budget=budget).threshold_percent == 100
        now = standing(budget)
        assert now.spent_usd + now.reserved_usd <= now.limit_usd

        Budget.objects.filter(pk=budget.pk).update(limit_usd=Decimal(1))
    finally:
        runner.join(timeout=60)

    reading.refresh_from_db()
    assert reading.status == ReadingStatus.DONE
    assert reading.error == ""
    now = standing(budget)
    assert now.spent_usd == reading.cost_usd
    assert now.reserved_usd == 0
