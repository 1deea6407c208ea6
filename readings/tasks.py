"""The worker's job: django-q2 calls run_reading with a reading id. It stays thin: the
engine reloads the reading and runs only what is unfinished, so a redelivered job resumes."""

from django_q.tasks import async_task

from readings.engine import run_reading_sync


def run_reading(reading_id: str) -> str:
    reading = run_reading_sync(reading_id)
    if reading.owner_id is not None:
        from readings.dispatch import dispatch_waiting  # it queues through this module

        # The owner's next waiting reading joins the back of the queue (fair queuing).
        dispatch_waiting(reading.owner_id)
    return reading.status


def enqueue_reading(reading) -> str:
    """Queue the reading for the worker; returns the django-q task id."""
    return async_task(
        "readings.tasks.run_reading", str(reading.pk), task_name=f"reading-{reading.pk}"
    )
