"""A dead worker's jobs go back on the queue in seconds, and its calls in flight into the
call log as lost, priced.

Every worker's watchdog runs recover() each beat (worker/watchdog.py) and once as the
worker starts. A worker is dead once its heartbeat is HEARTBEAT_STALE_S old (three missed
beats), or at once if it ran on this host and its process is gone (a cluster restarted on
the same machine recovers as it starts); a cluster is dead once none of its workers beats,
or its process is gone. Then:

- its calls in flight (LLMCall rows still pending, allocation/usage.py) become `lost`: the
  request reached the provider, or may have, and no answer will ever say what it cost, so
  it is priced from the request's input tokens and flagged `cost_estimated`;
- its jobs (JobClaim rows, worker/broker.py) are unlocked on the queue, so the next
  cluster to poll takes them: a running reading resumes (the engine runs only what is
  unfinished), one taken ahead but not started simply starts.

Siblings run this at once: each write is conditional (the pending outcome, the lock the
dead claim set), so one of them does it and the others find nothing to do. The job is the
same queue row, not a new one: no second delivery of it is left for later.
"""

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import OrmQ

from allocation.models import LLMCall
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage, UnknownModelPrice, cost_of
from budgets.services import settle_call
from readings.models import UNFINISHED, Reading
from worker.heartbeats import HEARTBEAT_STALE_S
from worker.models import JobClaim, WorkerHeartbeat
from worker.queue import enqueue_reading

logger = logging.getLogger(__name__)

STALE = timedelta(seconds=HEARTBEAT_STALE_S)
# A call pending this long is lost whoever sent it: no request outlives the client's timeout
# (LLM_TIMEOUT_S, a minute) by this much. It covers processes that never beat (the `read`
# command) and a call a live worker abandoned (cancelled mid-request).
PENDING_AT_MOST = timedelta(minutes=15)


@dataclass(frozen=True)
class Liveness:
    """Who is alive now, from the heartbeats."""

    workers: frozenset[str]  # holders that beat within STALE
    clusters: frozenset[str]  # clusters with at least one such worker
    stale: frozenset[str]  # holders that beat once, but not within STALE: dead

    def worker_alive(self, holder: str) -> bool:
        return holder in self.workers

    def cluster_alive(self, cluster: str) -> bool:
        return cluster in self.clusters


@dataclass(frozen=True)
class Recovered:
    lost_calls: int = 0
    released_jobs: int = 0


def liveness(now: datetime) -> Liveness:
    rows = WorkerHeartbeat.objects.values_list("holder", "cluster", "beat_at")
    fresh = [(holder, cluster) for holder, cluster, beat_at in rows if beat_at >= now - STALE]
    return Liveness(
        workers=frozenset(holder for holder, _ in fresh),
        clusters=frozenset(cluster for _, cluster in fresh),
        stale=frozenset(holder for holder, _, beat_at in rows if beat_at < now - STALE),
    )


def recover(now: datetime | None = None) -> Recovered:
    """One round: first the lost calls (so the resumed reading's totals include them), then
    the jobs."""
    now = now or timezone.now()
    live = liveness(now)
    lost = sum(book_lost(call_id, now) for call_id in lost_call_ids(now, live))
    released = sum(release(claim, now) for claim in dead_claims(now, live))
    released += sum(requeue(reading) for reading in dead_held_readings(live))
    if lost or released:
        logger.warning(
            "recovered from dead workers: %s job(s) back on the queue, %s lost call(s) booked",
            released,
            lost,
        )
    return Recovered(lost_calls=lost, released_jobs=released)


def gone(holder: str) -> bool:
    """A process of this host ("host:pid") that no longer exists, or is a zombie: dead
    without waiting for its heartbeat to go stale. Another host's processes cannot be seen
    from here, and a pid taken again by another process looks alive: both wait for the
    heartbeat. Like the limiter's leases, this takes host:pid to name one process: workers in
    separate pid namespaces (containers) need hostnames of their own, Docker's default."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process: it exists
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# --- Jobs -----------------------------------------------------------------------------


def dead_claims(now: datetime, live: Liveness) -> list[JobClaim]:
    """Claims whose holder is dead: the worker running the job or, for a job only taken
    ahead, the cluster that took it. Without a beat, a claim younger than STALE is not judged
    (a cluster may take a job before its workers' first beat) unless its process is gone."""
    return [claim for claim in JobClaim.objects.all() if _holder_dead(claim, now, live)]


def _holder_dead(claim: JobClaim, now: datetime, live: Liveness) -> bool:
    if claim.worker:
        holder, beats = claim.worker, live.worker_alive(claim.worker)
    else:
        holder, beats = claim.cluster, live.cluster_alive(claim.cluster)
    if gone(holder):
        return True
    return not beats and claim.claimed_at < now - STALE


def release(claim: JobClaim, now: datetime) -> bool:
    """Unlock the claim's job so the next cluster to poll takes it. Only if its lock is still
    the one this claim set: a sibling that released it first, or a cluster that took it again
    since, changed it."""
    with transaction.atomic():
        released = OrmQ.objects.filter(pk=claim.job_id, lock=claim.lock).update(lock=now)
        # Gone with it: a claim on a job that no longer exists is only clutter.
        JobClaim.objects.filter(pk=claim.pk, lock=claim.lock).delete()
    return bool(released)


# --- Readings the queue cannot account for (the Redis broker) ----------------------------


def dead_held_readings(live: Liveness) -> list[Reading]:
    """Unfinished readings whose holder (Reading.held_by, set only when the queue keeps no
    job: the cluster that took it, then the worker running it) is dead: gone from this host,
    or neither a live worker nor a live cluster in the heartbeats for STALE."""
    unfinished = Reading.objects.filter(status__in=UNFINISHED)
    cutoff = timezone.now() - STALE
    return [
        reading
        for reading in unfinished.exclude(held_by="").only(
            "pk", "held_by", "dispatched_at", "created_at"
        )
        if gone(reading.held_by)
        or reading.held_by in live.stale
        or (
            not live.worker_alive(reading.held_by)
            and not live.cluster_alive(reading.held_by)
            and (reading.dispatched_at or reading.created_at) < cutoff
        )
    ]


def requeue(reading: Reading) -> bool:
    """Queue the reading again, once: only if it is still held by the dead worker (a sibling
    that requeued it first cleared that)."""
    if not Reading.objects.filter(pk=reading.pk, held_by=reading.held_by).update(held_by=""):
        return False
    enqueue_reading(reading.pk)
    return True


# --- Lost calls -----------------------------------------------------------------------


def lost_call_ids(now: datetime, live: Liveness) -> list[int]:
    """Calls still pending whose sender is dead, or pending for longer than any call lasts."""
    pending = LLMCall.objects.filter(outcome=CallOutcome.PENDING)
    holders = set(pending.order_by().values_list("holder", flat=True).distinct())
    dead = {holder for holder in holders if holder in live.stale or gone(holder)}
    return list(
        pending.filter(Q(holder__in=dead) | Q(started_at__lt=now - PENDING_AT_MOST))
        .order_by()
        .values_list("pk", flat=True)
    )


def book_lost(call_id: int, now: datetime) -> bool:
    """Turn a pending call into a lost one, priced from its request, and charge that to the
    reading's budgets like any call. False if it is no longer pending (a sibling booked it,
    or its answer came after all)."""
    with transaction.atomic():
        call = (
            LLMCall.objects.select_for_update(skip_locked=True)
            .filter(pk=call_id, outcome=CallOutcome.PENDING)
            .first()
        )
        if call is None:
            return False
        call.cost_usd, priced = estimated_cost(call.model, call.input_tokens)
        call.outcome = CallOutcome.LOST
        call.cost_estimated = True
        call.latency_s = max(0.0, (now - call.started_at).total_seconds())
        call.error = f"Lost: {call.holder or 'its worker'} died with the request in flight. " + (
            f"Cost estimated from {call.input_tokens} input tokens; the output is unknown."
            if priced
            else f"No price is known for {call.model}: booked at $0."
        )
        call.save(update_fields=["outcome", "cost_usd", "cost_estimated", "latency_s", "error"])
        if call.reading_id:
            settle_call(reading_id=call.reading_id, cost_usd=call.cost_usd)
    return True


def estimated_cost(model: str, input_tokens: int) -> tuple[Decimal, bool]:
    """The request's input tokens at the model's input price; (0, False) if it has none."""
    try:
        return cost_of(model, TokenUsage(input_tokens=input_tokens)), True
    except UnknownModelPrice:
        return Decimal(0), False
