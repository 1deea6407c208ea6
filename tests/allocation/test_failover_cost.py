"""A fallback's cost next to the allocated model's, for the call at hand, and the ceiling
that keeps a rescue from turning into a stampede to a dearer model."""

from decimal import Decimal

import pytest

from allocation.failover_cost import cost_multiples, skipped_fallbacks
from allocation.models import ModelPrice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def prices():
    for model, input_price, output_price in [
        ("claude-cheap-1", "1", "5"),
        ("claude-same-1", "1", "5"),
        ("claude-dear-1", "10", "20"),
    ]:
        ModelPrice.objects.create(
            model=model,
            input_per_mtok=Decimal(input_price),
            output_per_mtok=Decimal(output_price),
        )


def test_it_prices_both_models_for_the_same_call():
    multiples = cost_multiples(
        "claude-cheap-1",
        ["claude-same-1", "claude-dear-1"],
        input_tokens=1_000,
        output_tokens=1_000,
    )

    # cheap: 1,000 x $1 + 1,000 x $5 = $0.006; dear: 1,000 x $10 + 1,000 x $20 = $0.03
    assert multiples == {"claude-same-1": Decimal(1), "claude-dear-1": Decimal(5)}


def test_the_mix_of_the_call_decides_the_multiple():
    # All input: 10x; all output: 4x.
    assert cost_multiples(
        "claude-cheap-1", ["claude-dear-1"], input_tokens=1_000, output_tokens=0
    ) == {"claude-dear-1": Decimal(10)}
    assert cost_multiples(
        "claude-cheap-1", ["claude-dear-1"], input_tokens=0, output_tokens=1_000
    ) == {"claude-dear-1": Decimal(4)}


def test_it_skips_only_the_fallbacks_above_the_ceiling_and_says_why():
    skipped = skipped_fallbacks(
        "claude-cheap-1",
        ["claude-same-1", "claude-dear-1"],
        Decimal("1.50"),
        input_tokens=1_000,
        max_tokens=1_000,
    )

    assert list(skipped) == ["claude-dear-1"]
    assert skipped["claude-dear-1"] == (
        "claude-dear-1: skipped, it would cost 5.00x claude-cheap-1's price for this call, "
        "above the allocation's fallback cost ceiling of 1.50x"
    )


def test_without_a_ceiling_every_fallback_may_be_used():
    assert (
        skipped_fallbacks(
            "claude-cheap-1", ["claude-dear-1"], None, input_tokens=1_000, max_tokens=1_000
        )
        == {}
    )


def test_a_model_nobody_can_price_is_not_blocked_by_the_ceiling():
    # Validation refuses unpriceable models when staff save them; a rescue is not the place.
    assert (
        skipped_fallbacks(
            "claude-cheap-1",
            ["claude-unknown-9"],
            Decimal("1"),
            input_tokens=1_000,
            max_tokens=1_000,
        )
        == {}
    )
