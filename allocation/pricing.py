"""What a call costs: genai-prices' bundled price data, unless staff set an override.

Anthropic's usage.input_tokens excludes cache reads and writes, while genai-prices counts
them inside input_tokens, so the three are added before pricing. Money is Decimal throughout.
"""

from dataclasses import dataclass
from decimal import Decimal

from genai_prices import Usage, calc_price

from allocation.models import ModelPrice

PROVIDER = "anthropic"
MILLION = Decimal(1_000_000)


class UnknownModelPrice(LookupError):
    pass


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def cost_of(model: str, usage: TokenUsage) -> Decimal:
    return _priced(model, usage, ModelPrice.objects.filter(model=model).first())


def costs_on(models: list[str], usage: TokenUsage) -> dict[str, Decimal | None]:
    """What the same usage costs on each model (None where nobody can price it), with the
    admin's overrides read once."""
    overrides = {price.model: price for price in ModelPrice.objects.filter(model__in=models)}
    costs = {}
    for model in models:
        try:
            costs[model] = _priced(model, usage, overrides.get(model))
        except UnknownModelPrice:
            costs[model] = None
    return costs


def _priced(model: str, usage: TokenUsage, override: ModelPrice | None) -> Decimal:
    if override:
        return (
            usage.input_tokens * override.input_per_mtok
            + usage.output_tokens * override.output_per_mtok
            + usage.cache_read_tokens * override.cache_read_per_mtok
            + usage.cache_write_tokens * override.cache_write_per_mtok
        ) / MILLION
    return library_cost_of(model, usage)


def library_cost_of(model: str, usage: TokenUsage) -> Decimal:
    try:
        price = calc_price(
            Usage(
                input_tokens=usage.input_tokens
                + usage.cache_read_tokens
                + usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
            model_ref=model,
            provider_id=PROVIDER,
        )
    except LookupError:
        raise UnknownModelPrice(model) from None
    return Decimal(price.total_price)


def price_problem(model: str) -> str | None:
    """None if the model can be priced, else a message that says how to fix it."""
    if ModelPrice.objects.filter(model=model).exists():
        return None
    try:
        library_cost_of(model, TokenUsage(input_tokens=1))
    except UnknownModelPrice:
        return (
            f"No price is known for {model!r}: check the model id (e.g. claude-haiku-4-5), "
            "or add a model price override."
        )
    return None
