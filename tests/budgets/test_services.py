"""Reserve, settle, release against real Postgres rows (the engine is not run here)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from budgets.models import BudgetLedger, Reservation, ReservationState
from budgets.selectors import standing
from budgets.services import (
    BudgetExceeded,
    expire_reservations,
    release_reading,
    settle_call,
)
from readings.models import Reading
from readings.services import reading_create
from spreads.models import Spread
from tests.budgets.three_cards import THREE_CARDS, worst_case_of_three_cards

pytestmark = pytest.mark.django_db


def create(owner, question="Race?"):
    return reading_create(owner=owner, spread="three_card", question=question, cards=THREE_CARDS)


def test_it_reserves_the_worst_case_against_every_budget_that_applies(bob, budget_for):
    worst = worst_case_of_three_cards(bob)
    mine = budget_for(user=bob, limit=Decimal(1))
    platform = budget_for(limit=Decimal(5))
    spread = budget_for(spread=Spread.objects.get(slug="three_card"), limit=Decimal(5))
    other_spread = budget_for(spread=Spread.objects.get(slug="celtic_cross"), limit=Decimal(5))

    reading = create(bob)

    assert worst > 0
    for budget in (mine, platform, spread):
        assert standing(budget).reserved_usd == worst
        assert Reservation.objects.get(reading=reading, budget=budget).held_usd == worst
    assert standing(other_spread).reserved_usd == 0
    assert reading.cost_estimate.worst_case_usd == worst
    assert 0 < reading.cost_estimate.expected_usd < worst


def test_it_refuses_a_reading_that_does_not_fit_and_stores_nothing(bob, budget_for):
    worst = worst_case_of_three_cards(bob)
    budget_for(limit=worst * 10)
    tight = budget_for(user=bob, limit=worst * Decimal("1.5"))
    create(bob)

    with pytest.raises(BudgetExceeded) as refused:
        create(bob)

    assert refused.value.standing.budget == tight
    assert refused.value.needed_usd == worst
    assert Reading.objects.count() == 1
    assert Reservation.objects.count() == 2  # the first reading's, on both budgets
    body = refused.value.as_dict()
    assert body["budget"]["id"] == tight.pk
    assert Decimal(body["budget"]["reserved_usd"]) == worst
    assert body["budget"]["period"] == "day"
    assert "resets_at" in body["budget"]


def test_a_user_budget_does_not_govern_someone_elses_readings(bob, charlie, budget_for):
    budget_for(user=bob, limit=worst_case_of_three_cards(bob) / 2)
    create(charlie)
    with pytest.raises(BudgetExceeded):
        create(bob)


def test_settling_moves_real_cost_from_reserved_to_spent(bob, budget_for):
    worst = worst_case_of_three_cards(bob)
    budget = budget_for(user=bob, limit=Decimal(1))
    reading = create(bob)

    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.001"))
    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.002"))

    now = standing(budget)
    assert now.spent_usd == Decimal("0.003")
    assert now.reserved_usd == worst - Decimal("0.003")

    release_reading(reading.pk)
    now = standing(budget)
    assert (now.spent_usd, now.reserved_usd) == (Decimal("0.003"), 0)
    reservation = Reservation.objects.get(reading=reading)
    assert reservation.state == ReservationState.RELEASED
    # A second release (a redelivered job ending again) gives nothing back twice.
    release_reading(reading.pk)
    assert standing(budget).reserved_usd == 0


def test_a_reading_dearer_than_its_worst_case_still_counts_all_it_spent(bob, budget_for):
    worst = worst_case_of_three_cards(bob)
    budget = budget_for(user=bob, limit=Decimal(1))
    reading = create(bob)

    settle_call(reading_id=reading.pk, cost_usd=worst + Decimal("0.01"))

    now = standing(budget)
    assert now.spent_usd == worst + Decimal("0.01")
    assert now.reserved_usd == 0


def test_a_hold_whose_reading_is_gone_expires(bob, budget_for):
    budget = budget_for(user=bob, limit=Decimal(1))
    deleted = create(bob)
    stale = create(bob, question="Forgotten?")
    kept = create(bob, question="Still running?")
    Reservation.objects.filter(reading=stale).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    deleted.delete()

    assert expire_reservations() == 2

    held = Reservation.objects.get(state=ReservationState.HELD)
    assert held.reading == kept
    assert standing(budget).reserved_usd == held.held_usd


def test_a_budget_edited_in_flight_applies_to_the_next_reservation(bob, budget_for):
    worst = worst_case_of_three_cards(bob)
    budget = budget_for(user=bob, limit=worst * 3)
    first = create(bob)
    budget.limit_usd = worst * Decimal("1.5")
    budget.save()

    with pytest.raises(BudgetExceeded):
        create(bob, question="Second?")

    # The reading in flight keeps its hold and settles as before.
    settle_call(reading_id=first.pk, cost_usd=Decimal("0.001"))
    release_reading(first.pk)
    assert standing(budget).spent_usd == Decimal("0.001")
    assert standing(budget).reserved_usd == 0
    create(bob, question="Third?")


def test_a_switched_off_budget_governs_nothing(bob, budget_for):
    budget = budget_for(user=bob, limit=worst_case_of_three_cards(bob) / 2)
    budget.is_active = False
    budget.save()
    create(bob)
    assert not BudgetLedger.objects.exists()


def test_each_period_has_its_own_ledger(bob, budget_for):
    budget = budget_for(user=bob, limit=Decimal(1))
    reading = create(bob)
    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.004"))
    tomorrow = timezone.now() + timedelta(days=1)
    assert standing(budget, now=tomorrow).spent_usd == 0
    assert standing(budget).resets_at == standing(budget, now=tomorrow).period_start


def test_an_exempt_user_reserves_nothing(bob, budget_for):
    from budgets.models import QuotaOverride

    QuotaOverride.objects.create(user=bob, exempt_from_budgets=True)
    budget_for(user=bob, limit=worst_case_of_three_cards(bob) / 2)
    reading = create(bob)
    assert not reading.reservations.exists()


def test_the_expire_command_says_how_many_holds_it_released(bob, budget_for):
    from io import StringIO

    from django.core.management import call_command

    budget_for(user=bob, limit=Decimal(1))
    create(bob).delete()
    out = StringIO()
    call_command("expire_reservations", stdout=out)
    assert out.getvalue().strip() == "Released 1 hold."
