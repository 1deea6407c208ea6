"""Reads of the limiter's configuration and live state, for the admin and the reports."""

from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from allocation.limiter import LimiterState, Snapshot, get_backend
from allocation.models import LimitChange, ModelAllocation, ModelLimit, parse_model_list


def with_configured_limits(queryset: QuerySet) -> QuerySet:
    """Rows with a `model` field, annotated with the ModelLimit that applies to each (its own
    row, else "*"): `limit_source` and `configured_max`, subqueries of the one query."""
    own = ModelLimit.objects.filter(model=OuterRef("model"))
    default = ModelLimit.objects.filter(model=ModelLimit.DEFAULT)
    return queryset.annotate(
        limit_source=Coalesce(
            Subquery(own.values("model")[:1]), Subquery(default.values("model")[:1])
        ),
        configured_max=Coalesce(
            Subquery(own.values("max_concurrent_calls")[:1]),
            Subquery(default.values("max_concurrent_calls")[:1]),
        ),
    )


def live_snapshots(*, now: float, model: str | None = None) -> dict[str, Snapshot]:
    """Each model's shared state and calls in flight, from whichever backend holds them."""
    return get_backend().snapshots(now=now, model=model)


def snapshot_or_fresh(snapshots: dict[str, Snapshot], model: str) -> Snapshot:
    """A model's snapshot, or a fresh state with nothing in flight when it has none yet."""
    return snapshots.get(model) or Snapshot(LimiterState(model=model), 0)


def configured_limits(models: list[str]) -> dict[str, tuple[int, str]]:
    """For each model: (max concurrent calls, where it came from: its own row or "*")."""
    rows = dict(
        ModelLimit.objects.filter(model__in=[*models, ModelLimit.DEFAULT]).values_list(
            "model", "max_concurrent_calls"
        )
    )
    found = {}
    for model in models:
        source = model if model in rows else ModelLimit.DEFAULT
        if source in rows:
            found[model] = (rows[source], source)
    return found


def last_changes(models: list[str]) -> dict[str, LimitChange]:
    """Each model's latest LimitChange, in one query."""
    latest = LimitChange.objects.filter(model=OuterRef("model")).order_by("-created_at", "-pk")
    changes = LimitChange.objects.filter(
        model__in=models, pk=Subquery(latest.values("pk")[:1])
    ).order_by()
    return {change.model: change for change in changes}


def allocated_models() -> list[str]:
    """Every model an allocation names, as its model or a fallback, in a stable order."""
    names = set()
    for model, fallbacks in ModelAllocation.objects.values_list("model", "fallback_models"):
        names.add(model)
        names.update(parse_model_list(fallbacks))
    return sorted(names)
