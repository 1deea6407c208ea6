"""Where a queued reading stands in the line, and when it should start.

A standard reading waits first in the database (fair queuing keeps each user's readings in
the worker's queue to a few, worker/dispatch.py), then in the worker's queue, which is first
in, first out. Ahead of a reading already handed to the worker are the queued readings handed
over before it; ahead of one still waiting in the database, every reading handed over and
every waiting one created before it. The expected start follows from how many readings the
workers have started lately: it says "about", and it is.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from readings.models import Reading, ReadingMode, ReadingStatus

# Readings started over this long set the pace: long enough to smooth a burst, short
# enough to follow the provider's limits as they bind or loosen.
PACE_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class QueuePlace:
    position: int  # 1: next to start
    expected_start_at: datetime | None  # None until the workers have started anything lately


def queue_place(reading: Reading, *, now: datetime | None = None) -> QueuePlace | None:
    """None unless `reading` is a standard reading waiting to start."""
    if reading.status != ReadingStatus.QUEUED or reading.mode != ReadingMode.STANDARD:
        return None
    now = now or timezone.now()
    waiting = Reading.objects.filter(status=ReadingStatus.QUEUED, mode=ReadingMode.STANDARD)
    if reading.dispatched_at is not None:
        ahead = waiting.filter(dispatched_at__lt=reading.dispatched_at)
    else:
        ahead = waiting.filter(
            Q(dispatched_at__isnull=False) | Q(created_at__lt=reading.created_at)
        )
    position = ahead.exclude(pk=reading.pk).count() + 1
    started = Reading.objects.filter(started_at__gte=now - PACE_WINDOW).count()
    if not started:
        return QueuePlace(position, None)
    per_second = started / PACE_WINDOW.total_seconds()
    return QueuePlace(position, now + timedelta(seconds=position / per_second))
