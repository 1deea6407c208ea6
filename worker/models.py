from django.db import models


class WorkerHeartbeat(models.Model):
    """A worker process saying it is alive: its watchdog beats every few seconds, so /healthz
    and recovery (worker/recovery.py) can tell a live worker from one that was killed."""

    holder = models.CharField(max_length=100, unique=True, help_text="host:pid of the worker.")
    cluster = models.CharField(
        max_length=100,
        blank=True,
        db_index=True,
        help_text="host:pid of the worker's cluster (the process that forked it).",
    )
    started_at = models.DateTimeField(auto_now_add=True)
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self):
        return self.holder


class JobClaim(models.Model):
    """Which cluster took a job off the database queue, and which of its workers runs it.

    The queue's own row only says how long it is locked (the retry, minutes); this says who
    holds it, so recovery can hand a dead holder's job back in seconds (worker/broker.py).
    """

    job_id = models.BigIntegerField(unique=True, help_text="The django-q OrmQ row.")
    cluster = models.CharField(max_length=100, help_text="host:pid of the cluster that took it.")
    worker = models.CharField(
        max_length=100, blank=True, help_text="host:pid of the worker running it; empty: queued."
    )
    lock = models.DateTimeField(help_text="The lock the cluster set: a later claim changes it.")
    claimed_at = models.DateTimeField()
    until_done = models.BooleanField(
        default=False,
        help_text="The job returned but its reading runs on in the worker: the worker keeps "
        "the job locked and acknowledges it when the reading ends.",
    )

    class Meta:
        ordering = ["claimed_at"]

    def __str__(self):
        return f"job {self.job_id} held by {self.worker or self.cluster}"
