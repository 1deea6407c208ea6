"""The worker's job: django-q2 calls run_reading with a reading id. It stays thin: a standard
reading runs on the process's engine beside others (readings/concurrent_readings.py), an
economy one waits for Message Batches (readings/economy.py). Either way the engine reloads
the reading and runs only what is unfinished, so a resumed reading never repeats work."""

from django.db import close_old_connections
from django_q.tasks import async_task

from readings import economy
from readings.models import Reading, ReadingMode


def run_reading(reading_id: str) -> str:
    close_old_connections()
    if Reading.objects.filter(pk=reading_id, mode=ReadingMode.ECONOMY).exists():
        # Its calls wait for batches, which the economy Schedule submits and collects: the
        # job only starts the reading and frees the worker.
        reading = economy.start(reading_id)
        if reading.owner_id is not None:
            from readings.dispatch import dispatch_waiting  # it queues through this module

            dispatch_waiting(reading.owner_id)
        return reading.status
    from readings.concurrent_readings import hand_over  # it imports the engine

    return hand_over(reading_id)


def enqueue_reading(reading) -> str:
    """Queue the reading for the worker; returns the django-q task id."""
    return async_task(
        "readings.tasks.run_reading", str(reading.pk), task_name=f"reading-{reading.pk}"
    )
