"""A thread in every worker process: every HEARTBEAT_S it beats the process's heartbeat (for
/healthz), renews the locks of the jobs it holds and recovers readings whose worker died
(worker/recovery.py).

Started by django-q2's post_spawn signal, i.e. in each worker process after the fork, so the
holder it beats for is the worker itself, not the cluster's parent.
"""

import logging
import threading

from django.db import close_old_connections

from worker import broker, heartbeats, recovery

logger = logging.getLogger(__name__)

_started: threading.Event | None = None


def tick() -> None:
    """One round of the watchdog; each step stands alone so one failure skips only itself."""
    close_old_connections()
    try:
        heartbeats.beat()
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
    while not stop.wait(heartbeats.HEARTBEAT_S):
        tick()


def start(**_signal_kwargs) -> None:
    global _started
    if _started is not None:
        return
    _started = threading.Event()
    tick()
    threading.Thread(target=_loop, args=(_started,), name="watchdog", daemon=True).start()
