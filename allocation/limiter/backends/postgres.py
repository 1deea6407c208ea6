"""The limiter's shared state in Postgres: storage only (the sequences are LimiterBackend's).

One ModelState row per model holds its LimiterState; each call in flight is a Lease row.
A sequence runs in one transaction under SELECT ... FOR UPDATE on the model's row, so two
processes can never both take the last slot (healthchecks' TokenBucket accepts that race for
login throttling; provider limits cannot).
"""

import time
from collections import Counter

from django.db import connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from allocation.limiter.backends import LimiterBackend, Locked
from allocation.limiter.state import LeaseInfo, LimiterState, Snapshot
from allocation.models import Lease, ModelState

FIELDS = LimiterState.field_names()


class PostgresBackend(LimiterBackend):
    name = "postgres"

    def atomically(self, model, *, now, lease_id, decide):
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Limiter state is short-lived: after a crash, a few lost milliseconds of it
                # only cost a little accuracy, so these commits need not wait for the disk.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            row, _ = ModelState.objects.select_for_update().get_or_create(model=model)
            lease = Lease.objects.filter(pk=lease_id).first() if lease_id is not None else None
            locked = Locked(
                _state(row),
                None
                if lease is None
                else LeaseInfo(lease.holder, lease.expires_at, lease.input_estimate),
                lambda: Lease.objects.filter(model=model, expires_at__gt=now).count(),
            )
            result = decide(locked)
            for name in FIELDS:
                setattr(row, name, getattr(locked.state, name))
            row.save()
            if locked.drop_lease and lease is not None:
                lease.delete()
            new_ids = [
                lease.pk
                for lease in Lease.objects.bulk_create(
                    Lease(
                        model=model,
                        holder=new.holder,
                        expires_at=new.expires_at,
                        input_estimate=new.input_estimate,
                    )
                    for new in locked.new_leases
                )
            ]
        return result, new_ids

    def renew_held(self, holder, *, expires_at, now):
        return Lease.objects.filter(holder=holder).update(expires_at=expires_at)

    def read(self, *, now, model):
        rows = ModelState.objects.order_by("model").annotate(
            live_leases=Coalesce(Subquery(_live_lease_count(now)), 0)
        )
        if model is not None:
            rows = rows.filter(model=model)
        return {row.model: Snapshot(_state(row), row.live_leases) for row in rows}

    def holders(self, model, *, now):
        live = Lease.objects.filter(model=model, expires_at__gt=now)
        return dict(Counter(live.values_list("holder", flat=True)))

    def wipe(self):
        ModelState.objects.all().delete()
        Lease.objects.all().delete()

    def server_time(self):
        if connection.vendor != "postgresql":
            return time.time()
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
            return float(cursor.fetchone()[0])


def _state(row: ModelState) -> LimiterState:
    return LimiterState(model=row.model, **{name: getattr(row, name) for name in FIELDS})


def _live_lease_count(now: float):
    """The number of a model's unexpired leases, as a subquery on ModelState."""
    return (
        Lease.objects.filter(model=OuterRef("model"), expires_at__gt=now)
        .order_by()
        .values("model")
        .annotate(n=Count("pk"))
        .values("n")
    )
