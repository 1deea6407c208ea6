"""The database queue, telling who holds each job.

django-q2's ORM broker locks a job for the retry (minutes) when a cluster takes it, and only
the lock's expiry hands it on: a killed cluster's jobs, running or only taken ahead, stay
locked that long. This broker also writes a JobClaim (which cluster took the job, then which
worker runs it, see claim_for_worker), so recovery can hand a dead holder's job back as soon
as the heartbeats say it is gone (worker/recovery.py). Same queue table, same semantics
otherwise: enabled by Q_CLUSTER["broker_class"] when the queue is the database.
"""

import logging
import threading
from datetime import timedelta
from time import sleep

from django.db import connections, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import BadSignature, SignedPackage

from readings.models import Reading
from worker.heartbeats import cluster_holder, holder
from worker.models import JobClaim
from worker.queue import READING_JOB

logger = logging.getLogger(__name__)


class ClaimingORM(ORM):
    def dequeue(self):
        # ORM.dequeue, plus a claim written in the same transaction as the lock.
        jobs = self.get_connection().filter(key=self.list_key, lock__lt=timezone.now())[
            0 : Conf.BULK
        ]
        if not jobs:
            sleep(Conf.POLL)
            return None
        taken = []
        for job in jobs:
            if take_job(job, lock=self.timeout(job)):
                taken.append((job.pk, job.payload))
            # else another cluster was faster
        return taken

    def acknowledge(self, task_id):
        # A job whose reading still runs in its worker is acknowledged by that worker when
        # the reading ends (hold_until_done), not now.
        if JobClaim.objects.filter(job_id=task_id, until_done=True).exists():
            return None
        return self.delete(task_id)

    def delete(self, task_id):
        # Acknowledged, failed or purged: nobody holds it any more.
        _forget(task_id)


def take_job(job: OrmQ, *, lock) -> bool:
    """Lock the job for this cluster, if no other cluster locked it since it was read, and
    claim it (a job taken again replaces its last claim), atomically. On Postgres one
    statement: a cluster takes every reading's job this way."""
    claim = {"cluster": cluster_holder(), "lock": lock, "claimed_at": timezone.now()}
    connection = connections[Conf.ORM]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(TAKE, {"id": job.id, "seen": job.lock, **claim})
            return cursor.fetchone() is not None
    with transaction.atomic(using=Conf.ORM):
        if not OrmQ.objects.using(Conf.ORM).filter(id=job.id, lock=job.lock).update(lock=lock):
            return False
        JobClaim.objects.bulk_create(
            [JobClaim(job_id=job.id, worker="", **claim)],
            update_conflicts=True,
            unique_fields=["job_id"],
            update_fields=["cluster", "worker", "lock", "claimed_at"],
        )
    return True


TAKE = f"""
    WITH taken AS (
        UPDATE {OrmQ._meta.db_table} SET lock = %(lock)s
        WHERE id = %(id)s AND lock = %(seen)s
        RETURNING id
    )
    INSERT INTO {JobClaim._meta.db_table} (job_id, cluster, worker, lock, claimed_at, until_done)
    SELECT id, %(cluster)s, '', %(lock)s, %(claimed_at)s, false FROM taken
    ON CONFLICT (job_id) DO UPDATE SET cluster = EXCLUDED.cluster, worker = EXCLUDED.worker,
        lock = EXCLUDED.lock, claimed_at = EXCLUDED.claimed_at
    RETURNING job_id
"""


def _forget(job_id) -> None:
    """The job off the queue and its claim gone, atomically (on Postgres, one statement)."""
    connection = connections[Conf.ORM]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(FORGET, {"id": job_id})
        return
    with transaction.atomic(using=Conf.ORM):
        OrmQ.objects.using(Conf.ORM).filter(pk=job_id).delete()
        JobClaim.objects.filter(job_id=job_id).delete()


FORGET = f"""
    WITH gone AS (DELETE FROM {OrmQ._meta.db_table} WHERE id = %(id)s)
    DELETE FROM {JobClaim._meta.db_table} WHERE job_id = %(id)s
"""


_current = threading.local()


def current_job_id() -> int | None:
    """The queue row of the job this worker thread is running (None outside a job, or when
    the queue is not the database)."""
    return getattr(_current, "job_id", None)


class ClaimingRedis(Redis):
    """The Redis queue forgets a job once a cluster pops it, even one only taken ahead of its
    workers: a killed cluster would lose it for good. The reading it runs is marked as held
    by the cluster instead (Reading.held_by; a worker that starts it names itself), so
    recovery queues it again if that cluster dies. Enabled by Q_CLUSTER["broker_class"]
    when Q_REDIS_URL is set."""

    def dequeue(self):
        jobs = super().dequeue()
        for _, payload in jobs or ():
            reading_id = _reading_of(payload)
            if reading_id is not None:
                Reading.objects.filter(pk=reading_id).update(held_by=cluster_holder())
        return jobs


def _reading_of(payload) -> str | None:
    try:
        task = SignedPackage.loads(payload)
    except (BadSignature, Exception):  # noqa: BLE001 - not ours to judge: the worker will
        return None
    if task.get("func") != READING_JOB or not task.get("args"):
        return None
    return str(task["args"][0])


def claim_for_worker(sender=None, task=None, **_signal_kwargs) -> None:
    """django-q2's pre_execute, in the worker about to run the job: the job is now this
    process's, so the death of this worker alone (its cluster living on) is seen too."""
    job_id = (task or {}).get("ack_id")
    _current.job_id = job_id if isinstance(job_id, int) else None
    if job_id is None:
        return
    try:
        JobClaim.objects.filter(job_id=job_id).update(worker=holder())
    except Exception:  # noqa: BLE001 - the job must run all the same; its cluster still holds it
        logger.exception("could not mark job %s as this worker's", job_id)


# --- Jobs whose reading outlives them (worker/concurrent_readings.py) ------------------

# This process's held jobs: locked on the queue until their readings end.
_held: set[int] = set()
_held_lock = threading.Lock()


def hold_until_done(job_id: int) -> None:
    """The job is about to return while its reading runs on here: keep it on the queue,
    locked for this worker, so that if this worker dies recovery hands it back."""
    JobClaim.objects.filter(job_id=job_id).update(until_done=True)
    with _held_lock:
        _held.add(job_id)


def done_with(job_id: int) -> None:
    """The held job's reading ended: acknowledge the job."""
    with _held_lock:
        _held.discard(job_id)
    _forget(job_id)


def renew_held() -> int:
    """Push the lock of every job held here a whole retry ahead, so no cluster takes a job
    whose reading is still running (the watchdog calls this every beat). The claim's lock
    moves with the queue row's: recovery releases only a job whose lock is still the claim's."""
    with _held_lock:
        held = list(_held)
    if not held:
        return 0
    lock = timezone.now() + timedelta(seconds=Conf.RETRY)
    with transaction.atomic(using=Conf.ORM):
        OrmQ.objects.using(Conf.ORM).filter(pk__in=held).update(lock=lock)
        return JobClaim.objects.filter(job_id__in=held).update(lock=lock)
