"""Fair queuing: one user's burst must not starve everybody else.

django-q's queue is first in, first out, so 30 readings from one user would sit in front of
anybody else's next one. Instead, each user has at most READINGS_QUEUED_PER_USER readings in
the worker's queue (or running); the rest wait in the database, and each joins the back of
the queue when one of its owner's earlier readings ends. Between users this is round-robin:
a newcomer's reading waits behind at most that many of anyone's. Readings without an owner
(the `read` command, benches) and owners exempt from throttles join the queue at once.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from budgets.selectors import quota_for
from config.db_messages import results, roll_back
from readings.models import UNFINISHED, Reading, ReadingMode, ReadingStatus
from worker.queue import enqueue_with_transaction


def _slot_lifetime() -> timedelta:
    """A reading queued longer than its job can live (every retry of it) no longer holds
    one of its owner's slots: its job is gone."""
    cluster = settings.Q_CLUSTER
    return timedelta(seconds=cluster["retry"] * cluster.get("max_attempts", 1))


def dispatch(reading: Reading) -> list:
    """Queue `reading` now, or let it wait for its owner's turn; returns what was queued."""
    if reading.owner_id is None or quota_for(reading.owner).exempt_from_throttles:
        Reading.objects.filter(pk=reading.pk).update(dispatched_at=timezone.now())
        enqueue_with_transaction(reading.pk)
        return [reading.pk]
    return dispatch_waiting(reading.owner_id)


def dispatch_waiting(owner_id) -> list:
    """Fill the owner's free slots with their oldest waiting readings."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        waiting = _fill_slots_in_one_message(owner_id, now)
    else:
        waiting = _fill_slots(owner_id, now)
    for pk in waiting:
        enqueue_with_transaction(pk)
    return waiting


def _fill_slots(owner_id, now) -> list:
    with transaction.atomic():
        # One decision per owner at a time: two web processes must not both fill the last slot.
        # (NO KEY: a reading being created for the owner holds a key-share lock on this row.)
        get_user_model().objects.select_for_update(no_key=True).filter(pk=owner_id).first()
        busy = (
            Reading.objects.filter(
                owner_id=owner_id,
                status__in=UNFINISHED,
                dispatched_at__gte=now - _slot_lifetime(),
            )
            # A started economy reading waits for its batches, not in the worker's queue.
            .exclude(mode=ReadingMode.ECONOMY, status=ReadingStatus.RUNNING)
            .count()
        )
        free = settings.READINGS_QUEUED_PER_USER - busy
        if free <= 0:
            return []
        waiting = list(
            Reading.objects.filter(
                owner_id=owner_id, status=ReadingStatus.QUEUED, dispatched_at__isnull=True
            )
            .order_by("created_at")
            .values_list("pk", flat=True)[:free]
        )
        Reading.objects.filter(pk__in=waiting).update(dispatched_at=now)
    return waiting


READINGS = Reading._meta.db_table
# _fill_slots on Postgres, in one message: every POST and every reading's end runs it, and
# through the ORM it was six round trips. The lock is its own statement, so the count that
# follows starts after it is held and sees what the lock's last holder committed.
FILL_SLOTS = f"""
    SELECT 1 FROM {get_user_model()._meta.db_table} WHERE id = %(owner)s FOR NO KEY UPDATE;
    UPDATE {READINGS} SET dispatched_at = %(now)s
    WHERE id IN (
        SELECT id FROM {READINGS}
        WHERE owner_id = %(owner)s AND status = %(queued)s AND dispatched_at IS NULL
        ORDER BY created_at
        LIMIT greatest(0, %(slots)s - (
            SELECT count(*) FROM {READINGS}
            WHERE owner_id = %(owner)s AND status = ANY(%(unfinished)s)
                AND dispatched_at >= %(since)s
                AND NOT (mode = %(economy)s AND status = %(running)s)
        ))
    )
    RETURNING id, created_at;
"""


def _fill_slots_in_one_message(owner_id, now) -> list:
    params = {
        "owner": owner_id,
        "now": now,
        "since": now - _slot_lifetime(),
        "slots": settings.READINGS_QUEUED_PER_USER,
        "queued": ReadingStatus.QUEUED,
        "unfinished": list(UNFINISHED),
        "economy": ReadingMode.ECONOMY,
        "running": ReadingStatus.RUNNING,
    }
    own_transaction = not connection.in_atomic_block
    sql = f"BEGIN; {FILL_SLOTS} COMMIT;" if own_transaction else FILL_SLOTS
    with connection.cursor() as cursor:
        try:
            _owner, filled = results(cursor, sql, params)
        except BaseException:
            if own_transaction:
                roll_back(cursor)
            raise
    return [pk for pk, _ in sorted(filled, key=lambda row: row[1])]


def dispatch_all_waiting() -> int:
    """Every owner's free slots filled (after a crash between a reading's end and its
    successor's dispatch); returns how many readings were queued."""
    owners = (
        Reading.objects.filter(status=ReadingStatus.QUEUED, dispatched_at__isnull=True)
        .exclude(owner__isnull=True)
        .values_list("owner_id", flat=True)
        .distinct()
    )
    return sum(len(dispatch_waiting(owner_id)) for owner_id in owners)


# --- What readings announces (readings/signals.py) ---------------------------------------


def on_submitted(sender, reading: Reading, **_kwargs) -> None:
    dispatch(reading)


def on_ended(sender, reading_id, owner_id, **_kwargs) -> None:
    if owner_id is not None:
        # The owner's next waiting reading joins the back of the queue (fair queuing).
        dispatch_waiting(owner_id)
