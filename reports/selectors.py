"""Where the money goes: LLM call costs over a date range, summed by Postgres.

Every figure here is an aggregate computed in the database (`.values().annotate()`), so
the report costs a handful of grouped queries however many calls there are.
"""

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from allocation.allocator import AllocationError, Layer, env_name, get_allocator
from allocation.limiter import get_params
from allocation.models import CallOutcome, LimitChange, LLMCall, ModelAllocation
from allocation.outcomes import FAILURES
from allocation.pricing import TokenUsage, costs_on
from allocation.selectors import (
    allocated_models,
    configured_limits,
    last_changes,
    live_snapshots,
)
from readings.models import Reading
from spreads.models import Spread, TaskType

TOP_READINGS = 20
LIMIT_HISTORY_ROWS = 100
DEFAULT_DAYS = 30
# Failed attempts other than a 429: overloads (529), server errors and timeouts.
ERROR_OUTCOMES = sorted(FAILURES)
MONEY = DecimalField(max_digits=20, decimal_places=8)
ZERO = Decimal("0.00000000")


def default_range(*, today: date | None = None) -> tuple[date, date]:
    """The last 30 days, today (UTC) included."""
    end = today or datetime.now(UTC).date()
    return end - timedelta(days=DEFAULT_DAYS - 1), end


def calls_between(
    *, start: date, end: date, spread: str | None = None, task_type=None, model=None
) -> QuerySet:
    """Calls made from the start of `start` to the end of `end`, both days inclusive, in UTC.

    A half-open range on the raw column (not `created_at__date`) so Postgres can use the
    created_at indexes.
    """
    calls = LLMCall.objects.filter(
        created_at__gte=datetime.combine(start, time.min, tzinfo=UTC),
        created_at__lt=datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    ).exclude(outcome=CallOutcome.PENDING)  # still in flight: its tokens and cost are to come
    if spread:
        calls = calls.filter(spread__slug=spread)
    if task_type:
        calls = calls.filter(task_type=task_type)
    if model:
        calls = calls.filter(model=model)
    # The model's default ordering would otherwise leak into GROUP BY.
    return calls.order_by()


def _metrics() -> dict:
    return {
        "calls": Count("id"),
        "cost": Coalesce(Sum("cost_usd"), Value(ZERO), output_field=MONEY),
        "tokens_in": Coalesce(Sum("input_tokens"), 0),
        "tokens_out": Coalesce(Sum("output_tokens"), 0),
        "tokens_cache_read": Coalesce(Sum("cache_read_tokens"), 0),
        "tokens_cache_write": Coalesce(Sum("cache_write_tokens"), 0),
        "rate_limited": Count("id", filter=Q(outcome=CallOutcome.RATE_LIMITED)),
        "fallbacks": Count("id", filter=Q(is_fallback=True)),
        "errors": Count("id", filter=Q(outcome__in=ERROR_OUTCOMES)),
    }


def _day():
    return TruncDate("created_at", tzinfo=UTC)


def cost_summary(
    *, start: date, end: date, spread: str | None = None, task_type=None, model=None
) -> dict:
    """Totals, the same totals by task type, model, spread, day and day x task type, and
    the cost per reading, for calls in [start, end] (UTC days, inclusive)."""
    calls = calls_between(start=start, end=end, spread=spread, task_type=task_type, model=model)

    totals = calls.aggregate(
        **_metrics(),
        readings=Count("reading", distinct=True),
        reading_cost=Coalesce(
            Sum("cost_usd", filter=Q(reading__isnull=False)), Value(ZERO), output_field=MONEY
        ),
    )
    readings = totals.pop("readings")
    reading_cost = totals.pop("reading_cost")

    by_task_type = list(calls.values("task_type").annotate(**_metrics()).order_by("-cost"))
    by_model = list(calls.values("model").annotate(**_metrics()).order_by("-cost", "model"))
    by_spread = list(
        calls.values(spread_slug=F("spread__slug"), spread_name=F("spread__name"))
        .annotate(**_metrics())
        .order_by("-cost", "spread_slug")
    )
    by_day = list(calls.annotate(day=_day()).values("day").annotate(**_metrics()).order_by("day"))
    by_day_task_type = list(
        calls.annotate(day=_day())
        .values("day", "task_type")
        .annotate(calls=Count("id"), cost=Sum("cost_usd"))
        .order_by("day", "task_type")
    )

    return {
        "start": start,
        "end": end,
        "filters": {"spread": spread, "task_type": task_type, "model": model},
        "totals": totals,
        "by_task_type": by_task_type,
        "by_model": by_model,
        "by_spread": by_spread,
        "by_day": by_day,
        "by_day_task_type": by_day_task_type,
        "per_reading": {
            "readings": readings,
            "cost": reading_cost,
            "average_cost": ((reading_cost / readings).quantize(ZERO) if readings else ZERO),
            "top": top_readings(calls=calls),
        },
    }


def model_options(*, start: date, end: date, spread: str | None = None) -> list[dict]:
    """Cost optimisation per task type: for each task type, what its successful calls in the
    range cost, and what the very same tokens would have cost on each model staff allocate
    anywhere (as a model or a fallback). Token totals are summed in Postgres; only the
    pricing of those few totals happens here. Quality is not priced: this says where a
    cheaper model is worth trying, not that it reads as well."""
    calls = calls_between(start=start, end=end, spread=spread).filter(outcome=CallOutcome.OK)
    usage_by_task = list(
        calls.values("task_type")
        .annotate(
            calls=Count("id"),
            cost=Sum("cost_usd"),
            tokens_in=Sum("input_tokens"),
            tokens_out=Sum("output_tokens"),
            tokens_cache_read=Sum("cache_read_tokens"),
            tokens_cache_write_5m=Sum("cache_write_5m_tokens"),
            tokens_cache_write_1h=Sum("cache_write_1h_tokens"),
        )
        .order_by("task_type")
    )
    candidates = allocated_models()
    in_use = current_allocations(spread=spread)
    options = []
    for row in usage_by_task:
        usage = TokenUsage(
            input_tokens=row["tokens_in"],
            output_tokens=row["tokens_out"],
            cache_read_tokens=row["tokens_cache_read"],
            cache_write_5m_tokens=row["tokens_cache_write_5m"],
            cache_write_1h_tokens=row["tokens_cache_write_1h"],
        )
        costs = costs_on(candidates, usage)
        priced = {model: cost for model, cost in costs.items() if cost is not None}
        cheapest = min(priced, key=priced.get) if priced else None
        current = in_use.get(row["task_type"], [])
        current_models = {allocation["model"] for allocation in current}
        options.append(
            {
                "task_type": row["task_type"],
                "calls": row["calls"],
                "cost": row["cost"],
                "costs": [
                    {"model": model, "cost": costs[model], "current": model in current_models}
                    for model in candidates
                ],
                "cheapest": cheapest,
                "saving": (row["cost"] - priced[cheapest]) if cheapest else ZERO,
                # Where the task type's model is set now, per spread: what to edit to switch.
                "current": current,
                "on_cheapest": cheapest in current_models,
            }
        )
    return options


def current_allocations(*, spread: str | None = None) -> dict[str, list[dict]]:
    """For each task type, the model the next reading will use and where that is set: per
    active spread (or for the one spread asked for), grouped by model and layer.

    Each entry: model, layer (environment, spread, global, default), the spreads it applies
    to, and the ModelAllocation row to edit (None when an environment variable or the built-in
    default decides).
    """
    spreads = Spread.objects.filter(is_active=True).order_by("name")
    if spread:
        spreads = Spread.objects.filter(slug=spread)
    rows = {
        (row.task_type, row.spread_id): row.pk
        for row in ModelAllocation.objects.only("pk", "task_type", "spread_id")
    }
    allocator = get_allocator()
    found: dict[str, dict[tuple, dict]] = {}
    for one in spreads:
        for task_type in TaskType.values:
            try:
                config = allocator.get_config(task_type, spread=one)
            except AllocationError:
                continue  # the spread admin and the engine say what is wrong
            layer = config.sources["model"]
            allocation_id = {
                Layer.SPREAD: rows.get((task_type, one.pk)),
                Layer.GLOBAL: rows.get((task_type, None)),
            }.get(layer)
            key = (config.model, layer, allocation_id)
            entry = found.setdefault(task_type, {}).setdefault(
                key,
                {
                    "model": config.model,
                    "layer": layer,
                    "allocation_id": allocation_id,
                    "env": env_name(one.slug, task_type, "MODEL")
                    if layer == Layer.ENVIRONMENT
                    else None,
                    "spreads": [],
                    "spread_ids": [],
                },
            )
            entry["spreads"].append(one.name)
            entry["spread_ids"].append(one.pk)
    return {task_type: list(entries.values()) for task_type, entries in found.items()}


def top_readings(*, calls: QuerySet, limit: int = TOP_READINGS) -> list[dict]:
    """The most expensive readings among `calls`, with their spread, status and time."""
    top = list(
        calls.filter(reading__isnull=False)
        .values("reading_id")
        .annotate(calls=Count("id"), cost=Sum("cost_usd"))
        .order_by("-cost", "reading_id")[:limit]
    )
    details = {
        row["id"]: row
        for row in Reading.objects.filter(id__in=[r["reading_id"] for r in top]).values(
            "id", "spread__slug", "spread__name", "status", "created_at"
        )
    }
    return [
        {
            "reading_id": row["reading_id"],
            "spread": details.get(row["reading_id"], {}).get("spread__slug"),
            "spread_name": details.get(row["reading_id"], {}).get("spread__name"),
            "status": details.get(row["reading_id"], {}).get("status"),
            "created_at": details.get(row["reading_id"], {}).get("created_at"),
            "calls": row["calls"],
            "cost": row["cost"],
        }
        for row in top
    ]


GROUPS = {
    "day": ("day",),
    "task_type": ("task_type",),
    "model": ("model",),
    "spread": ("spread_slug",),
    "day_task_type": ("day", "task_type"),
}
METRIC_NAMES = list(_metrics())


def cost_rows(
    *,
    group: str,
    start: date,
    end: date,
    spread: str | None = None,
    task_type=None,
    model=None,
) -> list[dict]:
    """One grouping of the summary with every metric, for the CSV export."""
    calls = calls_between(start=start, end=end, spread=spread, task_type=task_type, model=model)
    if group == "day":
        rows = calls.annotate(day=_day()).values("day")
    elif group == "day_task_type":
        rows = calls.annotate(day=_day()).values("day", "task_type")
    elif group == "task_type":
        rows = calls.values("task_type")
    elif group == "model":
        rows = calls.values("model")
    elif group == "spread":
        rows = calls.values(spread_slug=F("spread__slug"))
    else:
        raise ValueError(f"Unknown group {group!r}; choose one of {', '.join(GROUPS)}.")
    return list(rows.annotate(**_metrics()).order_by(*GROUPS[group]))


def model_names() -> list[str]:
    """Every model that has been called, for the filter's choices."""
    return list(LLMCall.objects.order_by("model").values_list("model", flat=True).distinct())


def _utc(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix else None


def limits_overview(*, model: str | None = None, now: float | None = None) -> list[dict]:
    """Each model's live limiter state: the adaptive limit, the configured maximum (its own
    ModelLimit row, else "*"), the calls in flight, the circuit breaker and the last limit
    change. The state comes from the limiter's backend (Postgres or Redis), the limits and
    their history from Postgres: three reads, whatever the number of models."""
    now = clock.time() if now is None else now
    snapshots = live_snapshots(now=now, model=model)
    models = sorted(snapshots)
    limits = configured_limits(models)
    changes = last_changes(models)
    initial_limit = get_params().aimd.initial_limit
    overview = []
    for name in models:
        state, in_flight = snapshots[name].state, snapshots[name].in_flight
        adaptive, breaker = state.adaptive or {}, state.breaker or {}
        adaptive_limit = adaptive.get("limit", initial_limit)
        configured_max, limit_source = limits.get(name, (None, None))
        paused_until = max(state.paused_until or 0, adaptive.get("paused_until") or 0)
        change = changes.get(name)
        overview.append(
            {
                "model": name,
                "adaptive_limit": adaptive_limit,
                "configured_max": configured_max,
                "limit_source": limit_source,
                # What admission enforces: the smaller of the two.
                "effective_limit": min(adaptive_limit, configured_max or adaptive_limit),
                "in_flight": in_flight,
                "breaker_state": breaker.get("state", "closed"),
                "breaker_failures": breaker.get("failures", 0),
                "breaker_opened_at": _utc(breaker.get("opened_at")),
                "paused_until": _utc(paused_until) if paused_until > now else None,
                "last_reason": adaptive.get("last_reason"),
                "last_change": None
                if change is None
                else {"at": change.created_at, "limit": change.limit, "reason": change.reason},
            }
        )
    return overview


def limit_history(*, start: date, end: date, model: str | None = None) -> list[dict]:
    """Limit and breaker changes from the start of `start` to the end of `end` (UTC days,
    inclusive), newest first, at most LIMIT_HISTORY_ROWS."""
    changes = LimitChange.objects.filter(
        created_at__gte=datetime.combine(start, time.min, tzinfo=UTC),
        created_at__lt=datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )
    if model:
        changes = changes.filter(model=model)
    return list(
        changes.order_by("-created_at", "-pk").values(
            "created_at", "model", "limit", "reason", "breaker_state"
        )[:LIMIT_HISTORY_ROWS]
    )
