"""Every pricing case against figures worked out by hand from Anthropic's published rates.

claude-sonnet-5 (genai-prices' bundled data), USD per million tokens:
  standard: input 2, output 10, cache read 0.2, cache write 5m 2.5, cache write 1h 4
  Message Batches: input 1, output 5, cache read 0.1, cache write 5m 1.25, cache write 1h 2
Anthropic's usage.input_tokens excludes cache reads and writes; TokenUsage keeps that meaning.
"""

import random
from decimal import Decimal
from types import SimpleNamespace

import pytest

from allocation.models import ModelPrice
from allocation.pricing import (
    TokenUsage,
    UnknownModelPrice,
    _library_calc,
    cost_of,
    library_cost_of,
    price_problem,
)

pytestmark = pytest.mark.django_db

SONNET = "claude-sonnet-5"


def test_it_prices_a_five_minute_cache_write_at_1_25x_input():
    usage = TokenUsage(input_tokens=1000, cache_write_5m_tokens=4000, output_tokens=500)
    # 1000 * 2 + 4000 * 2.5 + 500 * 10 = 17,000 per million
    assert cost_of(SONNET, usage) == Decimal("0.017")


def test_it_prices_a_one_hour_cache_write_at_2x_input_not_the_five_minute_rate():
    usage = TokenUsage(input_tokens=1000, cache_write_1h_tokens=4000, output_tokens=500)
    # 1000 * 2 + 4000 * 4 + 500 * 10 = 23,000 per million
    assert cost_of(SONNET, usage) == Decimal("0.023")


def test_it_prices_writes_of_both_ttls_in_one_call_each_at_its_rate():
    usage = TokenUsage(input_tokens=0, cache_write_5m_tokens=1000, cache_write_1h_tokens=1000)
    # 1000 * 2.5 + 1000 * 4 = 6,500 per million (a write is counted once, not twice)
    assert cost_of(SONNET, usage) == Decimal("0.0065")


def test_it_prices_a_cache_read_at_a_tenth_of_input():
    usage = TokenUsage(input_tokens=200, cache_read_tokens=4000, output_tokens=500)
    # 200 * 2 + 4000 * 0.2 + 500 * 10 = 6,200 per million
    assert cost_of(SONNET, usage) == Decimal("0.0062")


def test_it_prices_a_cache_read_at_the_models_own_rate():
    # Sonnet 5.5 reads at 0.05x its $2 input: $0.10 per million.
    usage = TokenUsage(cache_read_tokens=10_000)
    assert cost_of("claude-sonnet-5-5", usage) == Decimal("0.001")


def test_it_prices_a_batched_call_at_half_the_standard_rates():
    usage = TokenUsage(input_tokens=1000, output_tokens=500, batched=True)
    # 1000 * 1 + 500 * 5 = 3,500 per million
    assert cost_of(SONNET, usage) == Decimal("0.0035")


def test_it_stacks_the_batch_discount_with_cache_reads_and_both_write_ttls():
    usage = TokenUsage(
        input_tokens=100,
        cache_read_tokens=3000,
        cache_write_5m_tokens=1000,
        cache_write_1h_tokens=2000,
        output_tokens=400,
        batched=True,
    )
    # 100 * 1 + 3000 * 0.1 + 1000 * 1.25 + 2000 * 2 + 400 * 5 = 7,650 per million
    assert cost_of(SONNET, usage) == Decimal("0.00765")


def test_an_admin_override_prices_every_rate_and_the_batch_multiplier():
    ModelPrice.objects.create(
        model="acme-tarot-1",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_read_per_mtok=Decimal("0.3"),
        cache_write_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal("6"),
        batch_multiplier=Decimal("0.5"),
    )
    usage = TokenUsage(
        input_tokens=1000,
        output_tokens=200,
        cache_read_tokens=2000,
        cache_write_5m_tokens=400,
        cache_write_1h_tokens=800,
    )
    # 1000 * 3 + 200 * 15 + 2000 * 0.3 + 400 * 3.75 + 800 * 6 = 12,900 per million
    assert cost_of("acme-tarot-1", usage) == Decimal("0.0129")
    assert cost_of("acme-tarot-1", usage.as_batched()) == Decimal("0.00645")


def test_an_override_takes_precedence_over_the_library_for_a_known_model():
    ModelPrice.objects.create(
        model=SONNET,
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("5"),
        cache_write_1h_per_mtok=Decimal("2"),
        batch_multiplier=Decimal("0.4"),
    )
    usage = TokenUsage(input_tokens=1000, output_tokens=1000, batched=True)
    # (1000 * 1 + 1000 * 5) * 0.4 = 2,400 per million
    assert cost_of(SONNET, usage) == Decimal("0.0024")


def test_an_override_without_a_one_hour_rate_refuses_to_price_a_one_hour_write():
    ModelPrice.objects.create(
        model="acme-tarot-1", input_per_mtok=Decimal("3"), output_per_mtok=Decimal("15")
    )
    assert cost_of("acme-tarot-1", TokenUsage(input_tokens=1000)) == Decimal("0.003")
    with pytest.raises(UnknownModelPrice, match="no 1-hour cache write rate"):
        cost_of("acme-tarot-1", TokenUsage(cache_write_1h_tokens=1000))


def test_a_batched_call_on_a_model_without_a_batch_price_is_an_error_not_full_price():
    # genai-prices has no batch variant for Opus 4.1 and would silently return full price.
    usage = TokenUsage(input_tokens=1000, batched=True)
    with pytest.raises(UnknownModelPrice, match="No Message Batches price"):
        cost_of("claude-opus-4-1", usage)
    assert "No Message Batches price" in price_problem("claude-opus-4-1", batched=True)
    assert price_problem("claude-opus-4-1") is None
    assert price_problem(SONNET, batched=True) is None


def test_usage_from_the_sdk_splits_cache_writes_by_ttl():
    sdk_usage = SimpleNamespace(
        input_tokens=12,
        output_tokens=300,
        cache_read_input_tokens=1500,
        cache_creation_input_tokens=2100,
        cache_creation=SimpleNamespace(
            ephemeral_5m_input_tokens=100, ephemeral_1h_input_tokens=2000
        ),
    )
    usage = TokenUsage.from_anthropic(sdk_usage, batched=True)
    assert usage == TokenUsage(
        input_tokens=12,
        output_tokens=300,
        cache_read_tokens=1500,
        cache_write_5m_tokens=100,
        cache_write_1h_tokens=2000,
        batched=True,
    )
    assert usage.cache_write_tokens == 2100


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize(
    "model", ["claude-haiku-5-5", "claude-sonnet-5", "claude-sonnet-4-5", "claude-haiku-4-5"]
)
def test_the_cached_rates_price_exactly_as_the_library_on_both_sides_of_every_tier(model, batched):
    # claude-haiku-5-5's prices step up above 100,000 input tokens, claude-sonnet-4-5's above
    # 200,000; the whole input (cache reads and writes included) picks the tier.
    rng = random.Random(7)
    edges = [0, 1, 99_999, 100_000, 100_001, 199_999, 200_000, 200_001]
    for _ in range(200):
        counts = [rng.choice([0, rng.choice(edges), rng.randint(1, 300_000)]) for _ in range(5)]
        usage = TokenUsage(*counts, batched=batched)
        assert library_cost_of(model, usage) == _library_calc(model, usage), usage
