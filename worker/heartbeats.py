"""Who a worker process is, and its heartbeat: how /healthz and recovery tell a live worker
from one that was killed.

A process is named host:pid, computed when asked: django-q2 forks its workers after Django
has set up, so a name fixed at import would be the cluster parent's.
"""

import os
import socket
from datetime import timedelta

from django.utils import timezone

from allocation.limiter.holder import current_holder
from worker.models import WorkerHeartbeat

# Every worker process beats this often (worker/watchdog.py)...
HEARTBEAT_S = 5.0
# ...and three missed beats is dead: a third of this, so one late beat is no alarm.
HEARTBEAT_STALE_S = 15


def holder() -> str:
    """This process (the same name the limiter's leases and the call log use)."""
    return current_holder()


def cluster_holder() -> str:
    """The cluster, seen from its pusher, monitor or workers: the process that forked them."""
    return f"{socket.gethostname()}:{os.getppid()}"


def beat() -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        holder=holder(), defaults={"beat_at": now, "cluster": cluster_holder()}
    )
    # Each worker process has its own row; a day later a dead one's is only clutter.
    WorkerHeartbeat.objects.filter(beat_at__lt=now - timedelta(days=1)).delete()
