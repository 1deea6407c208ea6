"""Which model ids exist and what each costs now: genai-prices' bundled Anthropic models, and
the price overrides staff add for models it does not know (or for agreed discounts).

The admin checks a model id against this before saving a limit or an allocation, so a
misspelt id is caught with a suggestion instead of silently never matching anything.
"""

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from genai_prices import data_snapshot

from allocation.models import ModelLimit, ModelPrice
from allocation.pricing import PROVIDER


def _provider():
    return next(p for p in data_snapshot.get_snapshot().providers if p.id == PROVIDER)


def library_model_ids() -> list[str]:
    return sorted(model.id for model in _provider().models)


def is_known(model: str) -> bool:
    """genai-prices matches the id (dated and aliased ids included), or an override names it."""
    return (
        model == ModelLimit.DEFAULT
        or _provider().find_model(model) is not None
        or ModelPrice.objects.filter(model=model).exists()
    )


def suggestions(model: str) -> list[str]:
    known = [*library_model_ids(), *ModelPrice.objects.values_list("model", flat=True)]
    return difflib.get_close_matches(model, known, n=3, cutoff=0.75)


def unknown_model_message(model: str, *, proceed: str):
    """What to say about an id nobody knows: the likely spelling, and how to go on if it really
    is a new model (`proceed` says how on this form)."""
    close = suggestions(model)
    add_price = f"{reverse('admin:allocation_modelprice_add')}?{urlencode({'model': model})}"
    return format_html(
        "{} is not a model id genai-prices or a price override knows.{} If it is a new model, "
        '{} <a href="{}">Add a price for {}</a>.',
        model,
        f" Did you mean {' or '.join(close)}?" if close else "",
        proceed,
        add_price,
        model,
    )


@dataclass(frozen=True)
class PriceInEffect:
    model: str
    source: str  # "override" or "genai-prices"
    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None
    note: str = ""
    in_use: bool = False


def _base(price) -> tuple[Decimal | None, str]:
    """A flat price, or the base of a tiered one with the tiers in words."""
    if price is None:
        return None, ""
    tiers = getattr(price, "tiers", None)
    if tiers is None:
        return Decimal(price), ""
    above = ", ".join(f"${tier.price}/MTok above {tier.start:,} prompt tokens" for tier in tiers)
    return Decimal(price.base), above


def prices_in_effect(*, in_use: set[str] = frozenset()) -> list[PriceInEffect]:
    """Every price a call could be charged at today, per million tokens in USD: each override,
    then each genai-prices model it does not shadow. Models in `in_use` come first."""
    overrides = {row.model: row for row in ModelPrice.objects.all()}
    rows = [
        PriceInEffect(
            model=row.model,
            source="override",
            input_per_mtok=row.input_per_mtok,
            output_per_mtok=row.output_per_mtok,
            cache_read_per_mtok=row.cache_read_per_mtok,
            cache_write_per_mtok=row.cache_write_per_mtok,
            in_use=row.model in in_use,
        )
        for row in overrides.values()
    ]
    now = datetime.now(UTC)
    for model in _provider().models:
        if model.id in overrides:
            continue
        prices = model.get_prices(now)
        values, notes = {}, []
        for field, key in (
            ("input_per_mtok", "input_mtok"),
            ("output_per_mtok", "output_mtok"),
            ("cache_read_per_mtok", "cache_read_mtok"),
            ("cache_write_per_mtok", "cache_write_mtok"),
        ):
            values[field], note = _base(getattr(prices, key, None))
            if note and field == "input_per_mtok":
                notes.append(f"input {note}")
        rows.append(
            PriceInEffect(
                model=model.id,
                source="genai-prices",
                note="; ".join(notes),
                in_use=model.id in in_use,
                **values,
            )
        )
    return sorted(rows, key=lambda row: (not row.in_use, row.model))
