"""The limiter's shared state in Postgres: storage only (the sequences are LimiterBackend's).

One ModelState row per model holds its LimiterState; each call in flight is a Lease row.
A sequence runs in one transaction under SELECT ... FOR UPDATE on the model's row, so two
processes can never both take the last slot (healthchecks' TokenBucket accepts that race for
login throttling; provider limits cannot).

Every LLM call runs two sequences (admission, release), so each is two round trips: one
that begins the transaction, locks the row and reads what the decision needs, and one that
stores the decision and commits. Several statements travel in one message (Django's
client-side parameter binding allows it), as separate statements still: the leases are
counted by a statement that starts after the lock is held, so it sees every lease the
previous holder of the lock committed. Inside a caller's transaction (a test's, say) the
same sequence runs through the ORM, under a savepoint.
"""

import json
import time
from collections import Counter

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from allocation.limiter.backends import LIMIT_COLUMNS, LimiterBackend, Locked, limits_for
from allocation.limiter.buckets import Limits
from allocation.limiter.state import LeaseInfo, LimiterState, Snapshot
from allocation.models import Lease, ModelLimit, ModelState
from config.db_messages import results, roll_back

FIELDS = LimiterState.field_names()


class PostgresBackend(LimiterBackend):
    name = "postgres"

    def atomically(self, model, *, now, lease_id, decide):
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            return _atomically_in_two_round_trips(model, now=now, lease_id=lease_id, decide=decide)
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
                else LeaseInfo(
                    lease.holder, lease.expires_at, lease.input_estimate, lease.output_reserve
                ),
                lambda: Lease.objects.filter(model=model, expires_at__gt=now).count(),
                limits_for(model),
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
                        output_reserve=new.output_reserve,
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


STATE_TABLE = ModelState._meta.db_table
LEASE_TABLE = Lease._meta.db_table
STATE_COLUMNS = ", ".join(FIELDS)
JSON_FIELDS = ("adaptive", "breaker", "bound")

LIMIT_TABLE = ModelLimit._meta.db_table
# The state under lock; the calls in flight and the named lease; the model's limits (its own
# row, else the default row): everything a decision needs, in one message.
LOAD = f"""
    SELECT {STATE_COLUMNS} FROM {STATE_TABLE} WHERE model = %(model)s FOR UPDATE;
    SELECT
        (SELECT count(*) FROM {LEASE_TABLE} WHERE model = %(model)s AND expires_at > %(now)s),
        named.holder, named.expires_at, named.input_estimate, named.output_reserve
    FROM (SELECT 1) AS one
    LEFT JOIN {LEASE_TABLE} AS named ON named.id = %(lease_id)s;
    SELECT {", ".join(LIMIT_COLUMNS)} FROM {LIMIT_TABLE}
    WHERE model IN (%(model)s, %(default)s) ORDER BY model = %(default)s LIMIT 1;
"""
BEGIN = "BEGIN; SET LOCAL synchronous_commit TO OFF;"
CREATE = f"""
    INSERT INTO {STATE_TABLE} (model, {STATE_COLUMNS}, updated_at)
    VALUES (%(model)s, {", ".join(f"%({name})s" for name in FIELDS)}, now())
    ON CONFLICT (model) DO NOTHING;
"""
STORE = f"""
    UPDATE {STATE_TABLE} SET {", ".join(f"{name} = %({name})s" for name in FIELDS)},
        updated_at = now()
    WHERE model = %(model)s;
"""
DROP_LEASE = f"DELETE FROM {LEASE_TABLE} WHERE id = %(lease_id)s;"
ADD_LEASES = f"""
    INSERT INTO {LEASE_TABLE} (model, holder, expires_at, input_estimate, output_reserve)
    SELECT %(model)s, lease.holder, lease.expires_at, lease.input_estimate, lease.output_reserve
    FROM unnest(
        %(holders)s::text[], %(expiries)s::float8[], %(estimates)s::int[], %(reserves)s::int[]
    ) WITH ORDINALITY AS lease(holder, expires_at, input_estimate, output_reserve, n)
    ORDER BY lease.n
    RETURNING id;
"""


def _atomically_in_two_round_trips(model, *, now, lease_id, decide):
    """PostgresBackend.atomically as two messages to the server (a third the first time a
    model is seen, to create its row). The admitted calls' log rows (locked.log_rows) are
    written in the second: a row that cannot be written (its reading deleted meanwhile) must
    not refuse the other calls of the step, so the step is then run again without them and
    each caller writes its own."""
    try:
        return _two_round_trips(model, now=now, lease_id=lease_id, decide=decide, open_calls=True)
    except IntegrityError:
        return _two_round_trips(model, now=now, lease_id=lease_id, decide=decide, open_calls=False)


def _two_round_trips(model, *, now, lease_id, decide, open_calls):
    params = {"model": model, "now": now, "lease_id": lease_id, "default": ModelLimit.DEFAULT}
    with connection.cursor() as cursor:
        try:
            loaded = results(cursor, BEGIN + LOAD, params)
            if not loaded[0]:
                fresh = LimiterState(model=model).stored_fields()
                loaded = results(cursor, CREATE + LOAD, {**params, **_as_columns(fresh)})
            (state_row,), ((in_flight, *named),), limit_rows = loaded
            state = LimiterState(
                model=model, **_from_columns(dict(zip(FIELDS, state_row, strict=True)))
            )
            lease = LeaseInfo(*named) if named[0] is not None else None
            limits = Limits(*limit_rows[0]) if limit_rows else None
            locked = Locked(state, lease, lambda: in_flight, limits)
            result = decide(locked)
            statements, store = STORE, {**params, **_as_columns(locked.state.stored_fields())}
            if locked.drop_lease and lease is not None:
                statements += DROP_LEASE
            if locked.new_leases:
                statements += ADD_LEASES
                store |= {
                    "holders": [new.holder for new in locked.new_leases],
                    "expiries": [new.expires_at for new in locked.new_leases],
                    "estimates": [new.input_estimate for new in locked.new_leases],
                    "reserves": [new.output_reserve for new in locked.new_leases],
                }
            inserts = [
                row.insert() if row is not None and open_calls else None for row in locked.log_rows
            ]
            for insert in filter(None, inserts):
                # Bound here, so a percent sign in its values is no placeholder of the message.
                statements += connection.ops.compose_sql(*insert).replace("%", "%%") + ";"
            stored = iter(results(cursor, statements + "COMMIT;", store))
        except BaseException:
            roll_back(cursor)
            raise
    new_ids = [row[0] for row in next(stored)] if locked.new_leases else []
    locked.call_ids = [None if insert is None else next(stored)[0][0] for insert in inserts]
    return result, new_ids


def _as_columns(values: dict) -> dict:
    return {
        name: json.dumps(value) if name in JSON_FIELDS else value for name, value in values.items()
    }


def _from_columns(values: dict) -> dict:
    return {
        name: json.loads(value) if name in JSON_FIELDS and isinstance(value, str) else value
        for name, value in values.items()
    }


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
