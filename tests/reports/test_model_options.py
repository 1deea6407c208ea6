"""Cost optimisation per task type: the same tokens priced on every allocated model."""

from decimal import Decimal

import pytest

from allocation.models import CallOutcome, ModelAllocation
from allocation.pricing import TokenUsage, library_cost_of
from reports.selectors import allocated_models, model_options
from spreads.models import TaskType
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db


def test_it_prices_each_task_types_tokens_on_every_allocated_model():
    make_call(
        at("2026-11-03 10:00"),
        task_type=TaskType.OVERALL_READING,
        model="claude-sonnet-5-5",
        input_tokens=2000,
        output_tokens=800,
        cost="0.012",
    )
    make_call(
        at("2026-11-03 10:00"),
        task_type=TaskType.OVERALL_READING,
        model="claude-sonnet-5-5",
        outcome=CallOutcome.RATE_LIMITED,
        input_tokens=0,
        output_tokens=0,
        cost="0",
    )

    [overall] = model_options(
        start=at("2026-11-01 00:00").date(), end=at("2026-11-30 00:00").date()
    )

    assert overall["calls"] == 1, "only successful calls spend tokens"
    costs = {option["model"]: option["cost"] for option in overall["costs"]}
    assert set(costs) == set(allocated_models())
    usage = TokenUsage(input_tokens=2000, output_tokens=800)
    assert costs["claude-haiku-5-5"] == library_cost_of("claude-haiku-5-5", usage)
    assert overall["cheapest"] == min(costs, key=costs.get)
    assert overall["saving"] == Decimal("0.012") - costs[overall["cheapest"]]


def test_it_lists_models_named_as_fallbacks_too():
    ModelAllocation.objects.filter(task_type=TaskType.ADVICE).update(
        fallback_models="claude-opus-4-8"
    )

    assert "claude-opus-4-8" in allocated_models()


def test_the_costs_page_shows_the_options(staff_client):
    make_call(
        at("2026-11-03 10:00"),
        task_type=TaskType.CARD_INTERPRETATION,
        model="claude-haiku-5-5",
        input_tokens=1000,
        output_tokens=300,
        cost="0.00125",
    )

    page = staff_client.get("/reports/costs/?start=2026-11-01&end=2026-11-30").content.decode()

    assert "The same tokens on other models" in page
    assert "claude-sonnet-5-5" in page
