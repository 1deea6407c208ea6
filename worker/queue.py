"""The job queue's address for a reading: one django-q2 job per reading."""

from django_q.tasks import async_task

# The job's function, by the dotted path django-q2 stores in each queued job.
READING_JOB = "worker.tasks.reading_job"


def enqueue_reading(reading_id) -> str:
    """Queue the reading for the worker; returns the django-q task id."""
    return async_task(READING_JOB, str(reading_id), task_name=f"reading-{reading_id}")
