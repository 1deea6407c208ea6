"""Staff edit budgets and quota overrides in the admin; bad input is refused with a message."""

import pytest

from budgets.models import Budget, QuotaOverride
from spreads.models import Spread

pytestmark = pytest.mark.django_db

ADD = "/admin/budgets/budget/add/"


def budget_form(**changes):
    form = {
        "name": "Platform daily",
        "scope": "platform",
        "user": "",
        "spread": "",
        "period": "day",
        "limit_usd": "10",
        "alert_thresholds": "80, 95",
        "is_active": "on",
    }
    return {**form, **changes}


def errors_of(response) -> str:
    assert response.status_code == 200  # the form again, not a redirect
    return " ".join(str(e) for e in response.context["adminform"].form.errors.values())


def test_staff_add_a_budget(staff_client):
    response = staff_client.post(ADD, budget_form())
    assert response.status_code == 302
    budget = Budget.objects.get()
    assert budget.thresholds == [80, 95]


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_it_refuses_a_limit_of_nothing_or_less(staff_client, limit):
    errors = errors_of(staff_client.post(ADD, budget_form(limit_usd=limit)))
    assert "more than 0 USD" in errors
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [("80, 120", "outside 0-100%"), ("0", "outside 0-100%"), ("eighty", "not a number")],
)
def test_it_refuses_thresholds_outside_0_to_100_percent(staff_client, thresholds, message):
    errors = errors_of(staff_client.post(ADD, budget_form(alert_thresholds=thresholds)))
    assert message in errors
    assert not Budget.objects.exists()


def test_it_refuses_a_scope_pointing_at_nothing(staff_client, bob):
    errors = errors_of(staff_client.post(ADD, budget_form(scope="user")))
    assert "needs the user" in errors
    errors = errors_of(staff_client.post(ADD, budget_form(scope="spread")))
    assert "needs the spread" in errors
    errors = errors_of(staff_client.post(ADD, budget_form(scope="platform", user=bob.pk)))
    assert "applies to everyone" in errors
    errors = errors_of(staff_client.post(ADD, budget_form(scope="user", user="999999")))
    assert "valid choice" in errors
    assert not Budget.objects.exists()


def test_staff_add_a_spread_budget(staff_client):
    spread = Spread.objects.get(slug="celtic_cross")
    response = staff_client.post(ADD, budget_form(scope="spread", spread=spread.pk))
    assert response.status_code == 302
    assert Budget.objects.get().spread == spread


def test_the_budget_list_shows_money_in_dollars_and_cents_and_from_when_it_counts(
    staff_client, bob
):
    budget = Budget.objects.create(scope="user", user=bob, period="month", limit_usd="1234.5")
    page = staff_client.get("/admin/budgets/budget/").content.decode()
    assert "bob" in page
    assert '<td class="field-limit">$1,234.50</td>' in page
    assert '<td class="field-spent_now">$0.00</td>' in page
    assert '<td class="field-reserved_now">$0.00</td>' in page
    # Made this month: it counts from its creation, not from the month's start.
    assert f'<td class="field-counts_from">{budget.created_at:%Y-%m-%d %H:%M}</td>' in page


def test_it_refuses_a_quota_override_with_a_bad_rate(staff_client, bob):
    response = staff_client.post(
        "/admin/budgets/quotaoverride/add/",
        {"user": bob.pk, "group": "", "reading_rate": "many/min", "note": ""},
    )
    assert "whole number" in errors_of(response)
    response = staff_client.post(
        "/admin/budgets/quotaoverride/add/",
        {"user": bob.pk, "group": "", "reading_rate": "5/fortnight", "note": ""},
    )
    assert "/sec, /min, /hour or /day" in errors_of(response)
    assert not QuotaOverride.objects.exists()


def test_it_refuses_a_quota_override_for_nobody(staff_client):
    response = staff_client.post(
        "/admin/budgets/quotaoverride/add/",
        {"user": "", "group": "", "reading_rate": "5/min", "note": ""},
    )
    assert "either a user or a group" in errors_of(response)


def test_staff_exempt_a_user(staff_client, bob):
    response = staff_client.post(
        "/admin/budgets/quotaoverride/add/",
        {
            "user": bob.pk,
            "group": "",
            "reading_rate": "",
            "exempt_from_throttles": "on",
            "exempt_from_budgets": "on",
            "note": "bench account",
        },
    )
    assert response.status_code == 302
    assert QuotaOverride.objects.get(user=bob).exempt_from_budgets
