"""POST /api/readings/estimate/: the expected cost, the worst case, and what budgets say."""

from decimal import Decimal

import pytest

from budgets.models import QuotaOverride
from readings.models import Reading
from tests.budgets.three_cards import admission_of_three_cards
from tests.readings.api.conftest import client_for
from tests.readings.api.test_budget_refusal import BODY

pytestmark = pytest.mark.django_db


def test_it_estimates_a_reading_without_creating_it(bob, budget_for):
    asks = admission_of_three_cards(bob)
    worst = asks.worst_case_usd
    roomy = budget_for(user=bob, limit=Decimal(1))
    tight = budget_for(limit=asks.room_usd - Decimal("0.0001"))

    response = client_for(bob).post("/api/readings/estimate/", BODY, format="json")

    assert response.status_code == 200
    body = response.json()
    assert Decimal(body["worst_case_usd"]) == worst
    assert Decimal(body["room_needed_usd"]) == asks.room_usd < worst
    assert 0 < Decimal(body["expected_usd"]) < worst
    assert [t["task_type"] for t in body["tasks"]] == [
        "card_interpretation",
        "overall_reading",
        "relationships",
        "advice",
    ]
    assert sum(Decimal(t["expected_usd"]) for t in body["tasks"]) == Decimal(body["expected_usd"])
    checks = {b["id"]: b["allows"] for b in body["budgets"]}
    assert checks == {roomy.pk: True, tight.pk: False}
    assert body["allowed"] is False
    assert not Reading.objects.exists()


def test_an_exempt_user_is_told_no_budget_applies(bob, budget_for):
    QuotaOverride.objects.create(user=bob, exempt_from_budgets=True)
    budget_for(limit=Decimal("0.0001"))
    body = client_for(bob).post("/api/readings/estimate/", BODY, format="json").json()
    assert body["exempt_from_budgets"] is True
    assert body["budgets"] == [] and body["allowed"] is True


def test_it_refuses_a_bad_body_as_create_does(bob):
    response = client_for(bob).post(
        "/api/readings/estimate/", {"spread": "nope", "question": ""}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"spread", "question"}


def test_it_needs_a_login(api):
    assert api.post("/api/readings/estimate/", BODY, format="json").status_code in (401, 403)


def test_an_economy_reading_is_expected_at_the_batch_price_and_reserves_the_standard_worst(bob):
    # BODY names its cards, so both estimates are of the same reading.
    standard = client_for(bob).post("/api/readings/estimate/", BODY, format="json").json()
    economy = (
        client_for(bob)
        .post("/api/readings/estimate/", {**BODY, "mode": "economy"}, format="json")
        .json()
    )

    # The Message Batches API halves every price; an expired request may still fall back
    # to a standard call, so the worst case a creation reserves does not change.
    for task, halved in zip(standard["tasks"], economy["tasks"], strict=True):
        assert Decimal(halved["expected_usd"]) == Decimal(task["expected_usd"]) / 2
    assert economy["worst_case_usd"] == standard["worst_case_usd"]


def test_an_unknown_mode_is_refused_naming_the_allowed_ones(bob):
    response = client_for(bob).post(
        "/api/readings/estimate/", {**BODY, "mode": "cheap"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["mode"] == ['Unknown mode \'cheap\': use one of "standard", "economy".']


def test_it_estimates_in_the_language_asked_for_as_creation_reserves(bob):
    api = client_for(bob)
    estimate = "/api/readings/estimate/"
    korean = api.post(estimate, {**BODY, "language": "ko"}, format="json").json()
    english = api.post(estimate, {**BODY, "language": "en"}, format="json").json()

    created = api.post("/api/readings/", {**BODY, "language": "ko"}, format="json")

    # Korean prompts are other templates, of other lengths: another worst case.
    assert korean["worst_case_usd"] != english["worst_case_usd"]
    reading = Reading.objects.get(pk=created.json()["id"])
    assert Decimal(korean["worst_case_usd"]) == reading.cost_estimate.worst_case_usd


def test_an_unknown_language_is_refused_as_creation_refuses_it(bob):
    response = client_for(bob).post(
        "/api/readings/estimate/", {**BODY, "language": "xx"}, format="json"
    )

    assert response.status_code == 400
    assert "not a supported language" in response.json()["language"][0]
