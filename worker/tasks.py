"""The worker's job: django-q2 calls reading_job with a reading id. It stays thin: a standard
reading runs on the process's engine beside others (worker/concurrent_readings.py), an
economy one waits for Message Batches (readings/economy.py). Either way the engine reloads
the reading and runs only what is unfinished, so a resumed reading never repeats work."""

from django.db import close_old_connections

from readings import economy
from readings.models import Reading, ReadingMode
from worker.concurrent_readings import hand_over
from worker.dispatch import dispatch_waiting


def reading_job(reading_id: str) -> str:
    close_old_connections()
    if Reading.objects.filter(pk=reading_id, mode=ReadingMode.ECONOMY).exists():
        # Its calls wait for batches, which the economy Schedule submits and collects: the
        # job only starts the reading and frees the worker for its owner's next one.
        reading = economy.start(reading_id)
        if reading.owner_id is not None:
            dispatch_waiting(reading.owner_id)
        return reading.status
    return hand_over(reading_id)
