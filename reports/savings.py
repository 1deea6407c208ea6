"""What prompt caching, the Message Batches API and failover did to the bill.

One grouped query sums the tokens per (task type, model, requested model, batched, fallback);
each sum is then priced by allocation.pricing as it was and as it would have been: without
caching (every cached token sent as plain input), at the standard price instead of the batch
price, and on the requested model instead of the fallback. Both sides of each difference are
priced now, from the same token sums, so a difference is the caching, the batch or the model
alone, never a price change since the calls were made. Money is Decimal throughout.
"""

from dataclasses import replace
from datetime import date
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce

from allocation.pricing import Pricer, TokenUsage, UnknownModelPrice
from reports.selectors import ZERO, calls_between
from spreads.models import TaskType

RATIO = Decimal("0.0001")
TOKEN_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_5m_tokens": "cache_write_5m_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
}
# The figures of every row (a task type, a model, the totals), in CSV column order.
FIGURES = [
    "input_side_tokens",
    "cache_read_tokens",
    "cache_hit_ratio",
    "cache_saving",
    "batched_calls",
    "batch_saving",
    "fallback_calls",
    "fallback_cost",
    "fallback_cost_on_requested",
    "failover_extra",
    "unpriced_calls",
]
FAILOVER_COLUMNS = [
    "task_type",
    "model",
    "requested_model",
    "calls",
    "cost",
    "on_requested",
    "extra",
]


def _blank() -> dict:
    return {
        # Everything the model read before answering: plain input, cache reads and writes.
        "input_side_tokens": 0,
        "cache_read_tokens": 0,
        "cache_hit_ratio": None,
        "cache_saving": ZERO,
        "batched_calls": 0,
        "batch_saving": ZERO,
        "fallback_calls": 0,
        "fallback_cost": ZERO,
        "fallback_cost_on_requested": ZERO,
        "failover_extra": ZERO,
        # Calls left out of the money figures because a model they need has no price.
        "unpriced_calls": 0,
    }


def savings_summary(
    *, start: date, end: date, spread: str | None = None, task_type=None, model=None
) -> dict:
    """Cache hit ratio, savings from caching and from batches, and the extra cost of
    failover, for calls in [start, end] (UTC days, inclusive): in total, by task type, by
    model, and each (task type, fallback model, requested model) that failed over."""
    calls = calls_between(start=start, end=end, spread=spread, task_type=task_type, model=model)
    groups = list(
        calls.values("task_type", "model", "requested_model", "batched", "is_fallback")
        .annotate(
            calls=Count("id"),
            # Rate-limited and failed attempts spend nothing: only these need a price.
            spending=Count(
                "id",
                filter=Q(input_tokens__gt=0)
                | Q(output_tokens__gt=0)
                | Q(cache_read_tokens__gt=0)
                | Q(cache_write_tokens__gt=0),
            ),
            **{name: Coalesce(Sum(column), 0) for name, column in TOKEN_FIELDS.items()},
        )
        .order_by()
    )
    pricer = Pricer()
    totals = _blank()
    by_task_type: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    failover: dict[tuple, dict] = {}
    for row in groups:
        figures = _priced_group(row, pricer)
        for into in (
            totals,
            by_task_type.setdefault(row["task_type"], _blank()),
            by_model.setdefault(row["model"], _blank()),
        ):
            _add(into, figures)
        if row["is_fallback"]:
            key = (row["task_type"], row["model"], row["requested_model"])
            entry = failover.setdefault(
                key,
                {
                    "task_type": key[0],
                    "model": key[1],
                    "requested_model": key[2],
                    "calls": 0,
                    "cost": ZERO,
                    "on_requested": ZERO,
                    "extra": ZERO,
                    "unpriced_calls": 0,
                },
            )
            entry["calls"] += row["calls"]
            entry["cost"] += figures["fallback_cost"]
            entry["on_requested"] += figures["fallback_cost_on_requested"]
            entry["extra"] += figures["failover_extra"]
            entry["unpriced_calls"] += figures["unpriced_calls"]
    order = {value: index for index, value in enumerate(TaskType.values)}
    return {
        "totals": _with_ratio(totals),
        "by_task_type": [
            {"task_type": name, **_with_ratio(figures)}
            for name, figures in sorted(by_task_type.items(), key=lambda i: order.get(i[0], 99))
        ],
        "by_model": [
            {"model": name, **_with_ratio(figures)} for name, figures in sorted(by_model.items())
        ],
        "failover": sorted(
            failover.values(),
            key=lambda r: (-r["extra"], r["task_type"], r["model"], r["requested_model"]),
        ),
    }


def _priced_group(row: dict, pricer: Pricer) -> dict:
    usage = TokenUsage(
        **{name: row[name] for name in TOKEN_FIELDS},
        batched=row["batched"],
    )
    figures = _blank()
    figures["input_side_tokens"] = (
        usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    )
    figures["cache_read_tokens"] = usage.cache_read_tokens
    figures["batched_calls"] = row["calls"] if usage.batched else 0
    figures["fallback_calls"] = row["calls"] if row["is_fallback"] else 0
    if not row["spending"]:
        return figures
    # Without caching every cached token would have been sent, and paid for, as plain input.
    uncached = TokenUsage(
        input_tokens=figures["input_side_tokens"],
        output_tokens=usage.output_tokens,
        batched=usage.batched,
    )
    model = row["model"]
    try:
        cost = pricer.cost(model, usage)
        figures["cache_saving"] = pricer.cost(model, uncached) - cost
        if usage.batched:
            figures["batch_saving"] = pricer.cost(model, replace(usage, batched=False)) - cost
        if row["is_fallback"]:
            figures["fallback_cost"] = cost
            on_requested = pricer.cost(row["requested_model"], usage)
            figures["fallback_cost_on_requested"] = on_requested
            figures["failover_extra"] = cost - on_requested
    except UnknownModelPrice:
        # Better a figure that says what it leaves out than a guess: the row's tokens still
        # count towards the hit ratio.
        tokens = {key: figures[key] for key in ("input_side_tokens", "cache_read_tokens")}
        figures = {**_blank(), **tokens, "unpriced_calls": row["spending"]}
        figures["batched_calls"] = row["calls"] if usage.batched else 0
        figures["fallback_calls"] = row["calls"] if row["is_fallback"] else 0
    return figures


def _add(into: dict, figures: dict) -> None:
    for key, value in figures.items():
        if key != "cache_hit_ratio":
            into[key] += value


def _with_ratio(figures: dict) -> dict:
    """The share of the input side read from the cache, to 4 places (0.7500 is 75%)."""
    total = figures["input_side_tokens"]
    ratio = (Decimal(figures["cache_read_tokens"]) / total).quantize(RATIO) if total else None
    return {**figures, "cache_hit_ratio": ratio}


def with_savings(rows: list[dict], *, group: str, savings: dict) -> list[dict]:
    """The CSV's task type or model rows with the savings figures appended (blank figures
    for a row with no calls to price)."""
    key = {"task_type": "task_type", "model": "model"}[group]
    found = {row[key]: row for row in savings[f"by_{group}"]}
    return [{**_blank(), **row, **found.get(row[key], {})} for row in rows]
