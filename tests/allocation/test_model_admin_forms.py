"""Staff add model limits, allocations and prices in the admin: ids are checked against the
models genai-prices and the overrides know, new limits start from the * row, and the prices in
effect are listed."""

from decimal import Decimal

import pytest

from allocation.models import ModelLimit, ModelPrice
from spreads.models import TaskType

pytestmark = pytest.mark.django_db

LIMIT_ADD = "/admin/allocation/modellimit/add/"
ALLOCATION_ADD = "/admin/allocation/modelallocation/add/"


def limit_form(model: str, **fields) -> dict:
    return {
        "model": model,
        "requests_per_minute": 500,
        "input_tokens_per_minute": 300_000,
        "output_tokens_per_minute": 80_000,
        "max_concurrent_calls": 20,
        **fields,
    }


def test_a_new_limit_starts_from_the_star_rows_limits(staff_client):
    default = ModelLimit.objects.get(model=ModelLimit.DEFAULT)

    form = staff_client.get(LIMIT_ADD).context["adminform"].form

    assert form.initial["requests_per_minute"] == default.requests_per_minute
    assert form.initial["input_tokens_per_minute"] == default.input_tokens_per_minute
    assert form.initial["output_tokens_per_minute"] == default.output_tokens_per_minute
    assert form.initial["max_concurrent_calls"] == default.max_concurrent_calls


def test_it_refuses_a_misspelt_model_id_and_suggests_the_right_one(staff_client):
    response = staff_client.post(LIMIT_ADD, limit_form("claude-hiaku-4-5"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "claude-hiaku-4-5 is not a model id genai-prices or a price override knows." in page
    assert "Did you mean claude-haiku-4-5" in page
    assert not ModelLimit.objects.filter(model="claude-hiaku-4-5").exists()


def test_it_saves_a_limit_for_a_new_model_once_staff_say_it_is_new(staff_client):
    response = staff_client.post(LIMIT_ADD, limit_form("claude-next-1", new_model="on"))

    assert response.status_code == 302
    assert ModelLimit.objects.get(model="claude-next-1").requests_per_minute == 500


def test_it_accepts_dated_ids_of_known_models(staff_client):
    response = staff_client.post(LIMIT_ADD, limit_form("claude-haiku-4-5-20251001"))

    assert response.status_code == 302


def test_an_allocation_of_an_unknown_model_links_to_adding_its_price(staff_client):
    response = staff_client.post(
        ALLOCATION_ADD,
        {
            "task_type": TaskType.ADVICE,
            "spread": "",
            "model": "claude-sonet-4-5",
            "max_tokens": 1024,
            "temperature": 0.7,
            "fallback_models": "",
        },
    )

    page = response.content.decode()
    assert "Did you mean claude-sonnet-4-5" in page
    assert 'href="/admin/allocation/modelprice/add/?model=claude-sonet-4-5"' in page


def test_the_price_list_shows_every_price_in_effect_with_its_source(staff_client):
    ModelPrice.objects.create(
        model="claude-haiku-4-5", input_per_mtok=Decimal("0.5"), output_per_mtok=Decimal("2.5")
    )

    response = staff_client.get("/admin/allocation/modelprice/")

    prices = {row.model: row for row in response.context["prices_in_effect"]}
    assert prices["claude-haiku-4-5"].source == "override"
    assert prices["claude-haiku-4-5"].input_per_mtok == Decimal("0.5")
    assert prices["claude-sonnet-4-5"].source == "genai-prices"
    assert prices["claude-sonnet-4-5"].output_per_mtok > 0
    assert "Prices in effect today (USD per million tokens)" in response.content.decode()
