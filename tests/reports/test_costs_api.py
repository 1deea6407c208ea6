"""The JSON cost summary: the page's figures for scripts, money as exact decimal strings."""

import pytest
from rest_framework.authtoken.models import Token

from allocation.models import CallOutcome
from readings.models import Reading
from spreads.models import Spread, TaskType
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

URL = "/reports/api/costs/"
MARCH = {"start": "2025-03-01", "end": "2025-03-03"}


@pytest.fixture
def calls():
    celtic = Spread.objects.get(slug="celtic_cross")
    reading = Reading.objects.create(spread=celtic, question="Will it rain?")
    make_call(at("2025-03-01 09:00"), cost="0.00120000", spread=celtic, reading=reading)
    make_call(
        at("2025-03-02 18:00"),
        cost="0.01500000",
        spread=celtic,
        reading=reading,
        task_type=TaskType.OVERALL_READING,
        model="claude-sonnet-4-5",
    )
    make_call(at("2025-03-02 18:01"), outcome=CallOutcome.RATE_LIMITED, spread=celtic)
    return reading


def test_it_returns_the_summary_with_money_as_strings(staff_client, calls):
    response = staff_client.get(URL, MARCH)

    assert response.status_code == 200
    body = response.json()
    assert body["start"] == "2025-03-01"
    assert body["end"] == "2025-03-03"
    assert body["totals"]["cost"] == "0.01620000"
    assert body["totals"]["calls"] == 3
    assert body["totals"]["rate_limited"] == 1
    assert body["by_day"][1] == {
        "day": "2025-03-02",
        "calls": 2,
        "cost": "0.01500000",
        "tokens_in": 0,
        "tokens_out": 0,
        "tokens_cache_read": 0,
        "tokens_cache_write": 0,
        "rate_limited": 1,
        "fallbacks": 0,
        "errors": 0,
    }
    assert {row["model"]: row["cost"] for row in body["by_model"]} == {
        "claude-haiku-4-5": "0.00120000",
        "claude-sonnet-4-5": "0.01500000",
    }
    assert body["by_spread"][0]["spread_slug"] == "celtic_cross"


def test_it_reports_cost_per_reading(staff_client, calls):
    per_reading = staff_client.get(URL, MARCH).json()["per_reading"]

    assert per_reading["readings"] == 1
    assert per_reading["average_cost"] == "0.01620000"
    assert per_reading["top"][0]["reading_id"] == str(calls.id)
    assert per_reading["top"][0]["cost"] == "0.01620000"
    assert per_reading["top"][0]["spread"] == "celtic_cross"


def test_it_applies_the_filters(staff_client, calls):
    body = staff_client.get(URL, {**MARCH, "task_type": "overall_reading"}).json()

    assert body["filters"]["task_type"] == "overall_reading"
    assert body["totals"]["cost"] == "0.01500000"


def test_it_accepts_a_staff_token(client, alice, calls):
    token = Token.objects.create(user=alice)

    response = client.get(URL, MARCH, HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200


def test_it_refuses_bad_dates_with_field_errors(staff_client):
    response = staff_client.get(URL, {"start": "yesterday", "end": "2025-03-01"})

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["start"][0]["message"] == "Enter the start date as YYYY-MM-DD."


def test_it_refuses_a_start_after_the_end(staff_client):
    response = staff_client.get(URL, {"start": "2025-03-09", "end": "2025-03-01"})

    assert response.status_code == 400
    assert "after the end date" in response.json()["errors"]["__all__"][0]["message"]


def test_it_forbids_signed_in_non_staff(client, bob):
    client.force_login(bob)

    assert client.get(URL, MARCH).status_code == 403


def test_it_asks_anonymous_callers_to_authenticate(client):
    assert client.get(URL, MARCH).status_code == 401
