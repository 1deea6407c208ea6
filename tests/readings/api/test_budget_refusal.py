"""Creating a reading over budget: HTTP 402 with the budget's figures, nothing stored or queued."""

from decimal import Decimal

import pytest
from django_q.models import OrmQ

from readings.models import Reading
from tests.budgets.three_cards import admission_of_three_cards
from tests.readings.api.conftest import client_for

pytestmark = pytest.mark.django_db

BODY = {
    "spread": "three_card",
    "question": "Race?",
    "cards": [{"card": "the-fool"}, {"card": "the-magician"}, {"card": "the-star"}],
}


def test_a_reading_over_budget_is_refused_with_402_naming_the_budget(bob, budget_for):
    asks = admission_of_three_cards(bob)
    budget = budget_for(user=bob, limit=asks.room_usd + asks.expected_usd / 2)
    api = client_for(bob)
    assert api.post("/api/readings/", BODY, format="json").status_code == 202
    queued = OrmQ.objects.count()

    refused = api.post("/api/readings/", BODY, format="json")

    assert refused.status_code == 402
    body = refused.json()
    assert body["budget"]["id"] == budget.pk
    assert body["budget"]["period"] == "day"
    assert Decimal(body["budget"]["limit_usd"]) == budget.limit_usd
    assert Decimal(body["budget"]["spent_usd"]) == 0
    assert Decimal(body["budget"]["reserved_usd"]) == asks.expected_usd
    assert body["budget"]["resets_at"].startswith(str(budget.bounds(budget.created_at)[1].date()))
    assert Decimal(body["needed_usd"]) == asks.room_usd
    assert "cannot take this reading" in body["detail"]
    assert Reading.objects.filter(owner=bob).count() == 1
    assert OrmQ.objects.count() == queued


def test_a_bad_body_is_still_a_400_when_over_budget(bob, budget_for):
    budget_for(user=bob, limit=Decimal("0.0001"))
    response = client_for(bob).post("/api/readings/", {**BODY, "cards": []}, format="json")
    assert response.status_code == 400
    assert "cards" in response.json()
