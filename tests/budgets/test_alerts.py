"""Soft thresholds alert staff once per budget period: a row, an email, and a banner."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from budgets.models import BudgetAlert, BudgetLedger
from budgets.services import settle_call
from readings.services import reading_create
from tests.budgets.three_cards import THREE_CARDS

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_with_email(alice):
    alice.email = "alice@example.com"
    alice.save()
    return alice


def test_each_threshold_alerts_once_per_period(
    bob, budget_for, staff_with_email, django_capture_on_commit_callbacks
):
    budget = budget_for(user=bob, limit=Decimal(1), thresholds="50, 80")
    reading = reading_create(owner=bob, spread="three_card", question="Q?", cards=THREE_CARDS)

    with django_capture_on_commit_callbacks(execute=True):
        settle_call(reading_id=reading.pk, cost_usd=Decimal("0.40"))  # 40%: nothing
        assert not BudgetAlert.objects.exists()
        settle_call(reading_id=reading.pk, cost_usd=Decimal("0.15"))  # 55%: the 50% alert
        settle_call(reading_id=reading.pk, cost_usd=Decimal("0.05"))  # 60%: still only one
        settle_call(reading_id=reading.pk, cost_usd=Decimal("0.30"))  # 90%: the 80% alert
        settle_call(reading_id=reading.pk, cost_usd=Decimal("0.30"))  # 120%: nothing new

    alerts = list(BudgetAlert.objects.order_by("threshold_percent"))
    assert [a.threshold_percent for a in alerts] == [50, 80]
    assert [a.spent_usd for a in alerts] == [Decimal("0.55"), Decimal("0.90")]
    assert len(mail.outbox) == 2
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "50%" in mail.outbox[0].subject and str(budget) in mail.outbox[0].subject
    assert alerts[0].emailed_to == "alice@example.com"


def test_a_threshold_crossed_in_one_leap_raises_every_alert_below_it(
    bob, budget_for, staff_with_email, django_capture_on_commit_callbacks
):
    budget_for(user=bob, limit=Decimal(1))
    reading = reading_create(owner=bob, spread="three_card", question="Q?", cards=THREE_CARDS)
    with django_capture_on_commit_callbacks(execute=True):
        settle_call(reading_id=reading.pk, cost_usd=Decimal("0.97"))
    assert sorted(BudgetAlert.objects.values_list("threshold_percent", flat=True)) == [80, 95]
    assert len(mail.outbox) == 2


def test_a_new_period_alerts_again(bob, budget_for, staff_with_email):
    budget = budget_for(user=bob, limit=Decimal(1), thresholds="50")
    yesterday = budget.bounds(timezone.now() - timedelta(days=1))[0]
    old = BudgetLedger.objects.create(budget=budget, period_start=yesterday)
    BudgetAlert.objects.create(
        budget=budget,
        period_start=old.period_start,
        threshold_percent=50,
        spent_usd=Decimal("0.6"),
        limit_usd=budget.limit_usd,
    )
    reading = reading_create(owner=bob, spread="three_card", question="Q?", cards=THREE_CARDS)
    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.6"))
    assert BudgetAlert.objects.filter(budget=budget).count() == 2


def test_staff_see_alerts_and_budgets_on_the_cost_reports_page(
    bob, budget_for, staff_client, staff_with_email
):
    budget = budget_for(user=bob, limit=Decimal(1), thresholds="50")
    budget.name = "Bob's daily"
    budget.save()
    reading = reading_create(owner=bob, spread="three_card", question="Q?", cards=THREE_CARDS)
    settle_call(reading_id=reading.pk, cost_usd=Decimal("0.6"))

    page = staff_client.get("/reports/costs/").content.decode()

    assert "Bob&#x27;s daily has passed 50% of its limit" in page
    assert 'id="budgets"' in page
    assert "$0.60" in page  # spent
    assert "$1.00" in page  # limit
