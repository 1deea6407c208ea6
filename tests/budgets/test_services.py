"""Admit, hold, settle, release against real Postgres rows (the engine is not run here).

A reading is admitted at its expected cost with the margin, if its largest phase's worst
case fits beside everyone else's claims; each phase then claims its own worst case just
before it runs, and settles as its calls are logged."""

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from budgets.models import BudgetAlert, BudgetLedger, Reservation, ReservationState
from budgets.selectors import standing
from budgets.services import (
    BudgetExceeded,
    expire_reservations,
    hold_for_step,
    release_reading,
    settle_call,
    with_margin,
)
from readings.models import Reading, ReadingMode
from readings.services import reading_create
from spreads.models import Spread
from tests.budgets.three_cards import THREE_CARDS, admission_of_three_cards

pytestmark = pytest.mark.django_db


def create(owner, question="Race?", mode=ReadingMode.STANDARD):
    return reading_create(
        owner=owner, spread="three_card", question=question, cards=THREE_CARDS, mode=mode
    )


def test_a_reading_is_admitted_at_its_expected_cost_with_the_margin_on_every_budget(
    bob, budget_for
):
    asks = admission_of_three_cards(bob)
    mine = budget_for(user=bob, limit=Decimal(1))
    platform = budget_for(limit=Decimal(5))
    spread = budget_for(spread=Spread.objects.get(slug="three_card"), limit=Decimal(5))
    other_spread = budget_for(spread=Spread.objects.get(slug="celtic_cross"), limit=Decimal(5))

    reading = create(bob)

    expected = reading.cost_estimate.expected_usd
    assert asks.expected_usd == with_margin(expected) == expected * Decimal("1.2")
    # Far less than the whole reading at worst, which is what used to be held.
    assert asks.expected_usd * 3 < reading.cost_estimate.worst_case_usd
    for budget in (mine, platform, spread):
        assert standing(budget).reserved_usd == asks.expected_usd
        reservation = Reservation.objects.get(reading=reading, budget=budget)
        assert (reservation.expected_usd, reservation.held_usd) == (asks.expected_usd, 0)
    assert standing(other_spread).reserved_usd == 0


def test_it_refuses_a_reading_without_room_for_its_largest_phase_and_stores_nothing(
    bob, budget_for
):
    asks = admission_of_three_cards(bob)
    assert asks.largest_step_usd > asks.expected_usd
    budget_for(limit=asks.room_usd * 10)
    # Room for one reading's largest phase beside another's claim, not for a third claim.
    tight = budget_for(user=bob, limit=asks.expected_usd + asks.room_usd)
    create(bob)
    create(bob, question="Second?")

    with pytest.raises(BudgetExceeded) as refused:
        create(bob, question="Third?")

    assert refused.value.standing.budget == tight
    # Its question is not the others', so its figures are not quite theirs.
    assert refused.value.needed_usd == pytest.approx(asks.room_usd, rel=Decimal("0.01"))
    assert Reading.objects.count() == 2
    assert Reservation.objects.count() == 4  # the first two readings', on both budgets
    body = refused.value.as_dict()
    assert body["budget"]["id"] == tight.pk
    claims = [r.claim_usd for r in Reservation.objects.filter(budget=tight)]
    assert Decimal(body["budget"]["reserved_usd"]) == sum(claims)
    assert body["budget"]["period"] == "day"
    assert "resets_at" in body["budget"]


def test_a_user_budget_does_not_govern_someone_elses_readings(bob, charlie, budget_for):
    budget_for(user=bob, limit=admission_of_three_cards(bob).room_usd / 2)
    create(charlie)
    with pytest.raises(BudgetExceeded):
        create(bob)


def test_a_phase_claims_its_worst_case_before_it_starts_and_settles_as_it_spends(bob, budget_for):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=Decimal(1))
    reading = create(bob)
    phase = asks.largest_step_usd

    hold_for_step(reading.pk, phase)
    assert standing(budget).reserved_usd == phase

    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.001"))
    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.002"))
    now = standing(budget)
    assert now.spent_usd == Decimal("0.003")
    assert now.reserved_usd == phase - Decimal("0.003")

    # The next phase's claim replaces what this one still held; below what the reading is
    # still expected to spend, that is what stays claimed.
    hold_for_step(reading.pk, Decimal("0.0001"))
    assert standing(budget).reserved_usd == asks.expected_usd - Decimal("0.003")

    release_reading(reading.pk)
    now = standing(budget)
    assert (now.spent_usd, now.reserved_usd) == (Decimal("0.003"), 0)
    assert Reservation.objects.get(reading=reading).state == ReservationState.RELEASED
    # A second release (a redelivered job ending again) gives nothing back twice.
    release_reading(reading.pk)
    assert standing(budget).reserved_usd == 0


def test_a_phase_without_room_changes_nothing_and_tells_staff_once(bob, budget_for):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=asks.expected_usd + asks.room_usd)
    first, second = create(bob), create(bob, question="Second?")
    hold_for_step(first.pk, asks.largest_step_usd)
    before = standing(budget)

    for _ in range(2):
        with pytest.raises(BudgetExceeded) as refused:
            hold_for_step(second.pk, asks.largest_step_usd)
    assert refused.value.standing.budget == budget
    assert standing(budget) == before
    assert Reservation.objects.get(reading=second).held_usd == 0
    waiting = BudgetAlert.objects.get(budget=budget)
    assert waiting.threshold_percent == 100

    # The first reading ends: its money comes back, and the second's phase fits.
    settle_call(reading_id=first.pk, cost_usd=Decimal("0.001"))
    release_reading(first.pk)
    hold_for_step(second.pk, asks.largest_step_usd)
    assert standing(budget).reserved_usd == asks.largest_step_usd


def test_a_reading_refused_a_phase_gives_back_its_last_phases_hold_so_another_goes_on(
    bob, budget_for
):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=asks.expected_usd + asks.room_usd)
    first, second = create(bob), create(bob, question="Second?")
    # Both finish a first phase that took half the limit each: nothing is left.
    first_phase = budget.limit_usd / 2
    hold_for_step(first.pk, first_phase)
    hold_for_step(second.pk, first_phase)
    assert standing(budget).reserved_usd == budget.limit_usd

    with pytest.raises(BudgetExceeded):
        hold_for_step(first.pk, asks.largest_step_usd)
    # Were the first still holding its last phase, the second would wait too, for ever.
    assert Reservation.objects.get(reading=first).claim_usd == asks.expected_usd
    hold_for_step(second.pk, asks.largest_step_usd)
    assert standing(budget).reserved_usd == asks.expected_usd + asks.largest_step_usd


def test_an_admission_leaves_room_for_the_dearest_phase_of_every_reading_admitted_before(
    bob, budget_for
):
    small = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=Decimal(1))
    big = reading_create(owner=bob, spread="celtic_cross", question="Big?")
    big_asks = Reservation.objects.get(reading=big)
    assert big_asks.largest_step_usd - big_asks.claim_usd > small.headroom_usd
    # Room for the small reading's own phases, not for the big one's dearest beside it.
    budget.limit_usd = big_asks.claim_usd + small.room_usd + Decimal("0.0001")
    budget.save()

    with pytest.raises(BudgetExceeded) as refused:
        create(bob)

    assert refused.value.needed_usd == (
        small.claim_usd + big_asks.largest_step_usd - big_asks.claim_usd
    )


def test_the_budget_is_never_exceeded_by_the_claims_it_grants(bob, budget_for):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=asks.room_usd * 3)
    admitted = []
    for n in range(10):
        with contextlib.suppress(BudgetExceeded):
            admitted.append(create(bob, question=f"Reading {n}?"))
    for reading in admitted:
        with contextlib.suppress(BudgetExceeded):
            hold_for_step(reading.pk, asks.largest_step_usd)
        now = standing(budget)
        assert now.spent_usd + now.reserved_usd <= budget.limit_usd
    assert len(admitted) > 3  # more than the old whole-worst-case rule would have admitted


def test_an_economy_reading_holds_its_whole_worst_case_from_the_start(bob, budget_for):
    budget = budget_for(user=bob, limit=Decimal(1))
    reading = create(bob, mode=ReadingMode.ECONOMY)
    worst = admission_of_three_cards(bob, ReadingMode.ECONOMY).worst_case_usd
    assert standing(budget).reserved_usd == worst == reading.cost_estimate.worst_case_usd


def test_a_reading_dearer_than_its_claim_still_counts_all_it_spent(bob, budget_for):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=Decimal(1))
    reading = create(bob)
    hold_for_step(reading.pk, asks.largest_step_usd)

    settle_call(reading_id=reading.pk, cost_usd=asks.largest_step_usd + Decimal("0.01"))

    now = standing(budget)
    assert now.spent_usd == asks.largest_step_usd + Decimal("0.01")
    assert now.reserved_usd == 0


def test_a_claim_whose_reading_is_gone_expires(bob, budget_for):
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
    assert standing(budget).reserved_usd == held.claim_usd > 0


def test_a_budget_edited_in_flight_applies_to_the_next_admission(bob, budget_for):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=asks.room_usd * 3)
    first = create(bob)
    budget.limit_usd = asks.room_usd
    budget.save()

    with pytest.raises(BudgetExceeded):
        create(bob, question="Second?")

    # The reading in flight keeps its claim and settles as before.
    settle_call(reading_id=first.pk, cost_usd=Decimal("0.001"))
    release_reading(first.pk)
    assert standing(budget).spent_usd == Decimal("0.001")
    assert standing(budget).reserved_usd == 0
    budget.limit_usd = asks.room_usd + Decimal("0.002")
    budget.save()
    create(bob, question="Third?")


def test_a_switched_off_budget_governs_nothing(bob, budget_for):
    budget = budget_for(user=bob, limit=admission_of_three_cards(bob).room_usd / 2)
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
    budget_for(user=bob, limit=admission_of_three_cards(bob).room_usd / 2)
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
