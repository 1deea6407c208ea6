"""What a call costs: genai-prices' bundled price data, unless staff set an override.

Anthropic's usage.input_tokens excludes cache reads and writes, while genai-prices counts
them inside input_tokens, so the three are added before pricing. Cache writes are priced by
their TTL (1.25x input for 5 minutes, 2x for an hour) and a Message Batches call through the
library's `processing: batch` price variant (50% of everything, caching included). A case
nobody can price is an error, never a silent zero or a silent full price. Money is Decimal.
"""

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price
from genai_prices.types import TieredPrices

from allocation.models import ModelPrice
from allocation.staff_config import StaffTable

PROVIDER = "anthropic"
MILLION = Decimal(1_000_000)
BATCH_CONTEXT = {"processing": "batch"}


class UnknownModelPrice(LookupError):
    pass


@dataclass(frozen=True)
class TokenUsage:
    """One call's tokens as Anthropic reports them: input_tokens excludes the cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    batched: bool = False  # sent through the Message Batches API

    @property
    def cache_write_tokens(self) -> int:
        """Anthropic's cache_creation_input_tokens: both TTLs."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @classmethod
    def from_anthropic(cls, usage, *, batched: bool = False) -> "TokenUsage":
        """From the SDK's Usage. Without the TTL breakdown (older API versions) every write
        is a 5-minute one, the only kind those versions made."""
        written = usage.cache_creation_input_tokens or 0
        split = getattr(usage, "cache_creation", None)
        one_hour = (split.ephemeral_1h_input_tokens or 0) if split is not None else 0
        return cls(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_5m_tokens=max(0, written - one_hour),
            cache_write_1h_tokens=one_hour,
            batched=batched,
        )

    def as_batched(self) -> "TokenUsage":
        return replace(self, batched=True)


# Staff's price overrides, by model: every priced call and estimate reads them.
_overrides = StaffTable(ModelPrice, lambda rows: {row.model: row for row in rows})


def price_override(model: str) -> ModelPrice | None:
    return _overrides.get().get(model)


def cost_of(model: str, usage: TokenUsage) -> Decimal:
    return _priced(model, usage, price_override(model))


def costs_on(models: list[str], usage: TokenUsage) -> dict[str, Decimal | None]:
    """What the same usage costs on each model (None where nobody can price it)."""
    costs = {}
    for model in models:
        try:
            costs[model] = _priced(model, usage, price_override(model))
        except UnknownModelPrice:
            costs[model] = None
    return costs


class Pricer:
    """cost_of for many usages on a few models, with one set of overrides throughout: a
    report prices dozens of token sums against the same prices."""

    def __init__(self):
        self._overrides = _overrides.get()

    def cost(self, model: str, usage: TokenUsage) -> Decimal:
        """What `usage` costs on `model`; UnknownModelPrice if nobody can price it."""
        return _priced(model, usage, self._overrides.get(model))


def _priced(model: str, usage: TokenUsage, override: ModelPrice | None) -> Decimal:
    if override:
        return override_cost(override, usage)
    return library_cost_of(model, usage)


def override_cost(price: ModelPrice, usage: TokenUsage) -> Decimal:
    if usage.cache_write_1h_tokens and price.cache_write_1h_per_mtok is None:
        raise UnknownModelPrice(
            f"The price override for {price.model!r} has no 1-hour cache write rate: set it "
            "under Model price overrides."
        )
    standard = (
        usage.input_tokens * price.input_per_mtok
        + usage.output_tokens * price.output_per_mtok
        + usage.cache_read_tokens * price.cache_read_per_mtok
        + usage.cache_write_5m_tokens * price.cache_write_per_mtok
        + usage.cache_write_1h_tokens * (price.cache_write_1h_per_mtok or 0)
    ) / MILLION
    return standard * price.batch_multiplier if usage.batched else standard


def library_cost_of(model: str, usage: TokenUsage) -> Decimal:
    """The library's price of `usage`, as arithmetic on its per-token rates: fifteen times
    faster than asking the library each time, and every estimate prices 21 usages. The rates
    are read from the library itself (so they cannot drift from it), once a minute per model
    and price tier; a tier is chosen, as the library does, by the request's whole input."""
    minute = int(time.time() // RATES_FRESH_S)
    whole_input = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    floor = max(
        (start for start in _tier_starts(model, usage.batched, minute) if whole_input > start),
        default=0,
    )
    rates = _library_rates(model, usage.batched, floor, minute)
    counts = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
    )
    terms = (rate * count / MILLION for rate, count in zip(rates, counts, strict=True))
    return sum(terms, Decimal(0))


# How long the library's rates are reused: prices with a start date or a time of day change
# on the minute at the finest.
RATES_FRESH_S = 60


@lru_cache(maxsize=256)
def _tier_starts(model: str, batched: bool, _minute: int) -> tuple[int, ...]:
    """Where the model's prices step up (whole input tokens above which a tier applies)."""
    price = _library_calc(model, TokenUsage(input_tokens=1, batched=batched), full=True)
    return tuple(
        sorted(
            {
                tier.start
                for value in vars(price.model_price).values()
                if isinstance(value, TieredPrices)
                for tier in value.tiers
            }
        )
    )


@lru_cache(maxsize=512)
def _library_rates(model: str, batched: bool, floor: int, _minute: int) -> tuple[Decimal, ...]:
    """Per million tokens: uncached input, output, cache read, 5-minute and 1-hour cache
    write, for a request whose whole input is above `floor` (in that tier). Each is what the
    library charges for one more token of that kind; Decimal keeps every step exact."""
    whole = floor + 1

    def cost(**tokens) -> Decimal:
        return _library_calc(model, TokenUsage(batched=batched, **tokens))

    base = cost(input_tokens=whole)
    input_rate = base * MILLION / whole

    def rate_of(kind: str) -> Decimal:  # one token of `kind` in place of an uncached one
        mixed = cost(input_tokens=whole - 1, **{kind: 1})
        return (mixed - input_rate * (whole - 1) / MILLION) * MILLION

    return (
        input_rate,
        cost(input_tokens=whole, output_tokens=1_000_000) - base,
        rate_of("cache_read_tokens"),
        rate_of("cache_write_5m_tokens"),
        rate_of("cache_write_1h_tokens"),
    )


def _library_calc(model: str, usage: TokenUsage, *, full: bool = False):
    now = datetime.now(UTC)
    try:
        price = calc_price(
            Usage(
                input_tokens=usage.input_tokens
                + usage.cache_read_tokens
                + usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                # The total and the 1-hour part: the library prices the rest at the 5m rate.
                cache_write_tokens=usage.cache_write_tokens,
                cache_write_1h_tokens=usage.cache_write_1h_tokens,
            ),
            model_ref=model,
            provider_id=PROVIDER,
            genai_request_timestamp=now,
            price_context=BATCH_CONTEXT if usage.batched else None,
        )
    except LookupError:
        raise UnknownModelPrice(model) from None
    if usage.batched and not _has_batch_variant(price.model, now):
        # The library falls back to the standard price for a model without a batch variant:
        # that would overcharge by 2x without a word.
        raise UnknownModelPrice(
            f"No Message Batches price is known for {model!r}: add a model price override "
            "with its batch multiplier."
        )
    return price if full else Decimal(price.total_price)


def _has_batch_variant(model_info, now: datetime) -> bool:
    return any(
        all(BATCH_CONTEXT.get(key) == value for key, value in variant.when.items())
        and (variant.constraint is None or variant.constraint.active(now))
        for variant in model_info.price_variants or ()
    )


def price_problem(model: str, *, batched: bool = False) -> str | None:
    """None if the model can be priced (through the Message Batches API too, if `batched`),
    else a message that says how to fix it."""
    if price_override(model) is not None:
        return None
    try:
        library_cost_of(model, TokenUsage(input_tokens=1, batched=batched))
    except UnknownModelPrice as exc:
        if batched and str(exc) != model:
            return str(exc)
        return (
            f"No price is known for {model!r}: check the model id (e.g. claude-haiku-4-5), "
            "or add a model price override."
        )
    return None
