"""A thread in every worker process: it beats the process's heartbeat (for /healthz) and
recovers readings whose worker died (readings/recovery.py), every HEARTBEAT_S.

Started by django-q2's post_spawn signal, i.e. in each worker process after the fork, so the
holder it beats for is the worker itself, not the cluster's parent.
"""

import logging
import os
import socket
import threading
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from operations.models import WorkerHeartbeat
from readings import broker, recovery
from readings.broker import cluster_holder

logger = logging.getLogger(__name__)

# A third of the heartbeat's staleness (operations/health.py), so one late beat is no alarm.
HEARTBEAT_S = 5.0

_started: threading.Event | None = None


def holder() -> str:
    """This process, computed when asked (after the fork), never at import."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat() -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        holder=holder(), defaults={"beat_at": now, "cluster": cluster_holder()}
    )
    # Each worker process has its own row; a day later a dead one's is only clutter.
    WorkerHeartbeat.objects.filter(beat_at__lt=now - timedelta(days=1)).delete()


def tick() -> None:
    """One round of the watchdog; each step stands alone so one failure skips only itself."""
    close_old_connections()
    try:
        beat()
    except Exception:  # noqa: BLE001 - the next beat retries; a dead watchdog would be worse
        logger.exception("worker heartbeat failed")
    try:
        broker.renew_held()
    except Exception:  # noqa: BLE001 - the next beat retries, long before the lock expires
        logger.exception("could not renew the locks of held jobs")
    try:
        recovery.recover()
    except Exception:  # noqa: BLE001 - the next tick retries
        logger.exception("recovery failed")


def _loop(stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        tick()


def start(**_signal_kwargs) -> None:
    global _started
    if _started is not None:
        return
    _started = threading.Event()
    tick()
    threading.Thread(target=_loop, args=(_started,), name="watchdog", daemon=True).start()
