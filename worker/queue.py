"""The job queue's address for a reading: one django-q2 job per reading."""

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django_q.tasks import async_task

# The job's function, by the dotted path django-q2 stores in each queued job.
READING_JOB = "worker.tasks.reading_job"


def enqueue_reading(reading_id) -> str:
    """Queue the reading for the worker; returns the django-q task id."""
    return async_task(READING_JOB, str(reading_id), task_name=f"reading-{reading_id}")


def enqueue_with_transaction(reading_id) -> None:
    """Queue the reading for the worker as the caller's transaction commits. A queue in the
    database takes the job in that transaction: the reading and its job commit together (a
    process dying between two commits can no longer leave a reading dispatched with no job),
    and a POST commits once. Another queue (Redis) takes it after the commit, so the worker
    never finds a job whose reading it cannot see."""
    if connection.in_atomic_block and settings.Q_CLUSTER.get("orm") == DEFAULT_DB_ALIAS:
        enqueue_reading(reading_id)
    else:
        transaction.on_commit(lambda: enqueue_reading(reading_id))
