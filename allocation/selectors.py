"""Reads of the limiter's shared state, for the admin and the reports."""

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from allocation.models import Lease, ModelLimit


def model_states_with_limits(queryset: QuerySet, *, now: float) -> QuerySet:
    """ModelState rows with the ModelLimit that applies to each (its own row, else "*") and
    the calls in flight now, each a subquery of the one changelist query."""
    own = ModelLimit.objects.filter(model=OuterRef("model"))
    default = ModelLimit.objects.filter(model=ModelLimit.DEFAULT)
    in_flight = (
        Lease.objects.filter(model=OuterRef("model"), expires_at__gt=now)
        .order_by()
        .values("model")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(
        limit_source=Coalesce(
            Subquery(own.values("model")[:1]), Subquery(default.values("model")[:1])
        ),
        configured_max=Coalesce(
            Subquery(own.values("max_concurrent_calls")[:1]),
            Subquery(default.values("max_concurrent_calls")[:1]),
        ),
        in_flight=Coalesce(Subquery(in_flight), 0),
    )
