"""What /healthz reports: the database, the broker, the workers' heartbeat and the queue.

Each check is a small function returning (ok, detail) so the view stays a loop. The database
and the broker are required for the web process to do anything; a missing worker heartbeat
only degrades (readings queue up and run when a worker returns), so a load balancer keeps
serving the API and the reports.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from worker.heartbeats import HEARTBEAT_STALE_S
from worker.models import WorkerHeartbeat


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def check_database() -> Check:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return Check("database", True, connection.vendor)


def queue_depth() -> int:
    """Tasks waiting for (or held by) a worker, from whichever broker is configured."""
    if "redis" in settings.Q_CLUSTER:
        from django_q.brokers import get_broker

        return get_broker().queue_size() or 0
    from django_q.models import OrmQ

    return OrmQ.objects.count()


def check_broker() -> Check:
    if "redis" in settings.Q_CLUSTER:
        from django_q.brokers import get_broker

        return Check("broker", bool(get_broker().ping()), "redis")
    return Check("broker", True, f"orm, {queue_depth()} tasks queued")


def check_workers(now=None) -> Check:
    now = now or timezone.now()
    fresh = WorkerHeartbeat.objects.filter(beat_at__gte=now - timedelta(seconds=HEARTBEAT_STALE_S))
    alive = fresh.count()
    last = WorkerHeartbeat.objects.values_list("beat_at", flat=True).first()
    if alive:
        return Check("workers", True, f"{alive} cluster(s) alive", required=False)
    seen = f"last beat {last.isoformat()}" if last else "never seen"
    return Check("workers", False, f"no live worker cluster ({seen})", required=False)


def run_checks() -> list[Check]:
    checks = []
    for check in (check_database, check_broker, check_workers):
        try:
            checks.append(check())
        except Exception as exc:  # noqa: BLE001 - a failing dependency is the answer here
            name = check.__name__.removeprefix("check_")
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    return checks


def overall(checks: list[Check]) -> str:
    if any(not c.ok and c.required for c in checks):
        return "down"
    if any(not c.ok for c in checks):
        return "degraded"
    return "ok"
