"""Many readings per worker process.

django-q2 gives each worker process one job at a time, and a reading spends nearly all its
time waiting on the provider, so one reading per process leaves most of the provider
capacity the operator pays for unused (32 readings/min of an 86 ceiling with two processes).
Instead, the job hands its reading to the process's LLM runtime (one event loop,
allocation/client_pool.py), where up to WORKER_CONCURRENCY readings run side by side, and
returns at once, so the process takes its next job. A process already running
WORKER_CONCURRENCY readings holds the job until one ends: what it cannot take stays in the
queue for a sibling.

The job itself stays on the database queue until its reading ends (worker/broker.py):
django-q2's acknowledgement is skipped, the worker keeps the job locked (renewed each
heartbeat) and acknowledges it when the reading ends. If the worker dies, recovery
(worker/recovery.py) sees its heartbeat stop and hands the job back within seconds, and
another worker resumes the reading; finished tasks are never rerun. A Redis queue keeps no
job once taken, so there the reading names its worker (Reading.held_by) and recovery
queues it again if that worker dies.
"""

import logging
import threading
from concurrent.futures import Future

from asgiref.sync import sync_to_async
from django.conf import settings

from allocation.client_pool import runtime
from readings.engine import run_reading
from readings.models import Reading
from worker import broker
from worker.heartbeats import holder
from worker.queue import enqueue_reading

logger = logging.getLogger(__name__)

_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def slots() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(settings.WORKER_CONCURRENCY)
        return _slots


def hand_over(reading_id: str) -> str:
    """Start the reading on this process's runtime and return."""
    semaphore = slots()
    # A job waits for a slot at most WORKER_SLOT_WAIT_S, well under the queue's timeout
    # (Q_TIMEOUT_S) after which django-q2 would kill this process and every reading in it;
    # then it goes back to the queue, for whichever worker has room first.
    if not semaphore.acquire(timeout=settings.WORKER_SLOT_WAIT_S):
        enqueue_reading(reading_id)
        return "requeued: this worker process was full"
    # The job stays on the queue, locked for this worker, until the reading ends: if this
    # process dies, recovery hands it back and another worker resumes the reading.
    job_id = broker.current_job_id()
    if job_id is not None:
        broker.hold_until_done(job_id)
    else:
        # A Redis queue forgets a job once taken: the reading itself names its worker.
        Reading.objects.filter(pk=reading_id).update(held_by=holder())
    try:
        future = runtime.submit(_run(reading_id, job_id))
    except BaseException:
        semaphore.release()
        if job_id is not None:
            broker.done_with(job_id)  # a failed job leaves the queue, as ack_failures says
        raise
    future.add_done_callback(lambda done: _finished(done, reading_id, semaphore))
    return "started"


async def _run(reading_id: str, job_id: int | None):
    # The owner's next reading is dispatched when this one ends (readings.signals.reading_ended).
    try:
        reading = await run_reading(reading_id)
    finally:
        if job_id is not None:
            await sync_to_async(broker.done_with)(job_id)
    return reading.status


def _finished(future: Future, reading_id: str, semaphore: threading.BoundedSemaphore) -> None:
    semaphore.release()
    if future.cancelled():
        return
    if (exc := future.exception()) is not None:
        logger.error("reading %s ended with an error", reading_id, exc_info=exc)
