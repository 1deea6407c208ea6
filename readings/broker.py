"""The database queue, telling who holds each job.

django-q2's ORM broker locks a job for the retry (minutes) when a cluster takes it, and only
the lock's expiry hands it on: a killed cluster's jobs, running or only taken ahead, stay
locked that long. This broker also writes a JobClaim (which cluster took the job, then which
worker runs it, see claim_for_worker), so recovery can hand a dead holder's job back as soon
as the heartbeats say it is gone (readings/recovery.py). Same queue table, same semantics
otherwise: enabled by Q_CLUSTER["broker_class"] when the queue is the database.
"""

import logging
import os
import socket
from time import sleep

from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from operations.models import JobClaim

logger = logging.getLogger(__name__)


def cluster_holder() -> str:
    """The cluster, seen from its pusher, monitor or workers: the process that forked them."""
    return f"{socket.gethostname()}:{os.getppid()}"


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
            lock = self.timeout(job)
            with transaction.atomic(using=Conf.ORM):
                if not self.get_connection().filter(id=job.id, lock=job.lock).update(lock=lock):
                    continue  # another cluster was faster
                JobClaim.objects.update_or_create(
                    job_id=job.id,
                    defaults={
                        "cluster": cluster_holder(),
                        "worker": "",
                        "lock": lock,
                        "claimed_at": timezone.now(),
                    },
                )
            taken.append((job.pk, job.payload))
        return taken

    def delete(self, task_id):
        # Acknowledged, failed or purged: nobody holds it any more.
        with transaction.atomic(using=Conf.ORM):
            super().delete(task_id)
            JobClaim.objects.filter(job_id=task_id).delete()


def claim_for_worker(sender=None, task=None, **_signal_kwargs) -> None:
    """django-q2's pre_execute, in the worker about to run the job: the job is now this
    process's, so the death of this worker alone (its cluster living on) is seen too."""
    from readings.watchdog import holder

    job_id = (task or {}).get("ack_id")
    if job_id is None:
        return
    try:
        JobClaim.objects.filter(job_id=job_id).update(worker=holder())
    except Exception:  # noqa: BLE001 - the job must run all the same; its cluster still holds it
        logger.exception("could not mark job %s as this worker's", job_id)
