from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from allocation.failover_cost import TYPICAL_INPUT_TOKENS, skipped_fallbacks
from allocation.models import ModelAllocation, ModelPrice
from allocation.pricing import TokenUsage, cost_of
from spreads.models import Spread, TaskType

pytestmark = pytest.mark.django_db


def allocation(**fields) -> ModelAllocation:
    defaults = dict(task_type=TaskType.CARD_INTERPRETATION, model="claude-haiku-4-5")
    return ModelAllocation(**{**defaults, **fields})


def errors_of(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        instance.full_clean(validate_constraints=False)
    return info.value.message_dict


def problems_of(instance) -> dict[str, list[str]]:
    """What the admin would refuse the instance for: {} when it accepts it."""
    try:
        instance.full_clean(validate_constraints=False)
    except ValidationError as exc:
        return exc.message_dict
    return {}


def test_it_rejects_the_seed_documents_made_up_model_id():
    message = errors_of(allocation(model="claude-haiku-20240307"))["model"][0]
    assert "No price is known for 'claude-haiku-20240307'" in message
    assert "model price override" in message


def test_it_accepts_an_unknown_model_once_staff_give_it_a_price():
    ModelPrice.objects.create(
        model="claude-haiku-20240307",
        input_per_mtok=Decimal("0.25"),
        output_per_mtok=Decimal("1.25"),
    )

    assert problems_of(allocation(model="claude-haiku-20240307")) == {}
    # ... and its calls are charged at the price staff gave.
    million_each = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_of("claude-haiku-20240307", million_each) == Decimal("1.50")


def test_it_rejects_an_unpriceable_fallback():
    errors = errors_of(allocation(fallback_models="claude-imaginary-9"))
    assert "claude-imaginary-9" in errors["fallback_models"][0]


@pytest.mark.parametrize("temperature", [-0.1, 1.5])
def test_it_rejects_a_temperature_outside_0_to_1(temperature):
    assert "temperature" in errors_of(allocation(temperature=temperature))


def test_it_keeps_fallbacks_in_the_order_staff_wrote_them():
    assert allocation(fallback_models="claude-sonnet-4-0, claude-3-5-haiku-latest").fallbacks == [
        "claude-sonnet-4-0",
        "claude-3-5-haiku-latest",
    ]


def test_it_allows_one_global_allocation_per_task_type():
    with pytest.raises(IntegrityError):
        ModelAllocation.objects.create(task_type=TaskType.ADVICE, model="claude-haiku-4-5")


def test_it_rejects_max_tokens_above_the_spreads_cap():
    celtic = Spread.objects.get(slug="celtic_cross")

    errors = errors_of(allocation(spread=celtic, max_tokens=999_999))

    assert errors["max_tokens"] == [
        f"Celtic Cross caps its calls at {celtic.max_tokens:,} tokens: set max_tokens to "
        f"{celtic.max_tokens:,} or less, or raise the spread's max_tokens first."
    ]
    allocation(spread=celtic, max_tokens=celtic.max_tokens).full_clean(validate_constraints=False)


def test_it_rejects_a_global_max_tokens_no_spread_allows():
    errors = errors_of(allocation(max_tokens=999_999))

    assert "No spread allows calls of more than" in errors["max_tokens"][0]


def priced(model, input_per_mtok, output_per_mtok):
    ModelPrice.objects.create(
        model=model,
        input_per_mtok=Decimal(input_per_mtok),
        output_per_mtok=Decimal(output_per_mtok),
    )


def test_it_refuses_a_fallback_cost_ceiling_that_no_fallback_could_meet():
    priced("claude-cheap-1", "1", "5")
    priced("claude-dear-1", "3", "15")  # three times the price, whatever the mix

    errors = errors_of(
        allocation(
            model="claude-cheap-1",
            fallback_models="claude-dear-1",
            fallback_cost_ceiling=Decimal("2.00"),
        )
    )

    message = errors["fallback_cost_ceiling"][0]
    assert "claude-dear-1 costs 3.00x claude-cheap-1" in message
    assert "would never be used" in message


def test_it_accepts_a_fallback_cost_ceiling_every_fallback_meets():
    priced("claude-cheap-1", "1", "5")
    priced("claude-dear-1", "3", "15")
    accepted = allocation(
        model="claude-cheap-1",
        fallback_models="claude-dear-1",
        fallback_cost_ceiling=Decimal("3.00"),
    )

    assert problems_of(accepted) == {}
    # ... and when claude-cheap-1 fails, a typical call is still rescued by claude-dear-1.
    assert (
        skipped_fallbacks(
            accepted.model,
            accepted.fallbacks,
            accepted.fallback_cost_ceiling,
            input_tokens=TYPICAL_INPUT_TOKENS,
            max_tokens=accepted.max_tokens,
        )
        == {}
    )


def test_it_refuses_a_fallback_cost_ceiling_of_zero():
    assert "fallback_cost_ceiling" in errors_of(allocation(fallback_cost_ceiling=Decimal("0")))
