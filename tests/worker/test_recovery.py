"""Recovery from dead workers (worker/recovery.py): whose jobs go back on the queue, and
which calls in flight are booked as lost. The whole story, with real clusters killed and
restarted, is the last test."""

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, F
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ

from allocation.models import LLMCall
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage, cost_of
from allocation.usage import Attempt, record_call
from benchmarks.workers import WorkerCluster
from readings.engine import run_reading_sync
from readings.models import Reading, ReadingStatus, ReadingTask, TaskStatus
from readings.services import reading_create
from reports.selectors import cost_summary
from tests.polling import wait_for
from worker import recovery
from worker.broker import claim_for_worker, take_job
from worker.heartbeats import cluster_holder
from worker.models import JobClaim, WorkerHeartbeat
from worker.queue import enqueue_reading

pytestmark = pytest.mark.django_db

MODEL = "claude-haiku-4-5"
RETRY = timedelta(seconds=360)


@pytest.fixture
def now():
    return timezone.now()


def beating(holder, cluster, *, seconds_ago, now):
    return WorkerHeartbeat.objects.create(
        holder=holder, cluster=cluster, beat_at=now - timedelta(seconds=seconds_ago)
    )


def taken_job(*, cluster, worker="", seconds_ago=20, now):
    """A job some cluster took off the queue `seconds_ago`, locked for the retry."""
    lock = now - timedelta(seconds=seconds_ago) + RETRY
    job = OrmQ.objects.create(key="tarot", payload="x", lock=lock)
    JobClaim.objects.create(
        job_id=job.pk,
        cluster=cluster,
        worker=worker,
        lock=lock,
        claimed_at=now - timedelta(seconds=seconds_ago),
    )
    return job


def unlocked(job, now) -> bool:
    return OrmQ.objects.get(pk=job.pk).lock <= now


@pytest.fixture
def gone_pid():
    """The pid of a process of this host that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def here(pid) -> str:
    return f"{socket.gethostname()}:{pid}"


# --- Jobs -----------------------------------------------------------------------------


def test_a_job_whose_worker_stopped_beating_goes_back_on_the_queue(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)
    job = taken_job(cluster="h:10", worker="h:11", now=now)

    assert recovery.recover(now) == recovery.Recovered(released_jobs=1)

    assert unlocked(job, now)
    assert not JobClaim.objects.exists()


def test_a_job_whose_worker_beats_is_left_alone(now):
    beating("h:11", "h:10", seconds_ago=3, now=now)
    job = taken_job(cluster="h:10", worker="h:11", now=now)

    assert recovery.recover(now) == recovery.Recovered()

    assert not unlocked(job, now)
    assert JobClaim.objects.count() == 1


def test_a_worker_that_died_alone_loses_its_job_though_its_cluster_lives_on(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)  # killed
    beating("h:12", "h:10", seconds_ago=1, now=now)  # its sibling in the same cluster
    job = taken_job(cluster="h:10", worker="h:11", now=now)

    recovery.recover(now)

    assert unlocked(job, now)


def test_a_job_taken_ahead_is_released_only_when_its_whole_cluster_is_dead(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)
    beating("h:21", "h:20", seconds_ago=20, now=now)
    beating("h:22", "h:20", seconds_ago=2, now=now)
    of_dead_cluster = taken_job(cluster="h:10", now=now)
    of_live_cluster = taken_job(cluster="h:20", now=now)

    recovery.recover(now)

    assert unlocked(of_dead_cluster, now)
    assert not unlocked(of_live_cluster, now)


def test_a_claim_younger_than_a_heartbeat_is_not_judged(now):
    # A cluster that has just started may take a job before any of its workers beats.
    job = taken_job(cluster="h:30", seconds_ago=2, now=now)

    recovery.recover(now)

    assert not unlocked(job, now)


def test_a_holder_of_this_host_whose_process_is_gone_is_dead_before_its_beat_is_stale(
    now, gone_pid
):
    # A cluster restarted on the same machine need not wait three beats to recover.
    beating(here(gone_pid), here(1), seconds_ago=1, now=now)
    job = taken_job(cluster=here(1), worker=here(gone_pid), seconds_ago=1, now=now)

    recovery.recover(now)

    assert unlocked(job, now)
    assert recovery.gone(here(gone_pid))
    assert not recovery.gone(here(os.getpid()))
    assert not recovery.gone(f"another-host:{gone_pid}")  # not ours to see: the beat decides


def test_of_two_siblings_recovering_at_once_only_one_releases_the_job(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)
    job = taken_job(cluster="h:10", worker="h:11", now=now)
    live = recovery.liveness(now)
    [seen_by_one] = recovery.dead_claims(now, live)
    [seen_by_other] = recovery.dead_claims(now, live)

    assert recovery.release(seen_by_one, now) is True
    assert recovery.release(seen_by_other, now) is False
    assert unlocked(job, now)


def test_a_job_some_cluster_took_again_meanwhile_is_not_released_under_it(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)
    job = taken_job(cluster="h:10", worker="h:11", now=now)
    [stale_view] = recovery.dead_claims(now, recovery.liveness(now))
    # Released by a sibling, then taken by a live cluster, before this one acts.
    retaken = now + RETRY
    OrmQ.objects.filter(pk=job.pk).update(lock=retaken)
    JobClaim.objects.filter(job_id=job.pk).update(cluster="h:20", lock=retaken, claimed_at=now)

    assert recovery.release(stale_view, now) is False
    assert OrmQ.objects.get(pk=job.pk).lock == retaken
    assert JobClaim.objects.get(job_id=job.pk).cluster == "h:20"


def test_a_job_another_cluster_took_since_it_was_read_is_left_to_that_cluster():
    broker = get_broker()
    broker.enqueue("payload")
    seen = OrmQ.objects.get()
    theirs = timezone.now() + timedelta(minutes=5)
    OrmQ.objects.filter(pk=seen.pk).update(lock=theirs)  # the other cluster, first

    assert not take_job(seen, lock=timezone.now() + timedelta(minutes=5))

    assert OrmQ.objects.get().lock == theirs
    assert not JobClaim.objects.exists()


def test_the_queue_names_the_cluster_that_takes_a_job_then_the_worker_running_it():
    broker = get_broker()
    assert type(broker).__name__ == "ClaimingORM"
    broker.enqueue("payload")

    [(job_id, _payload)] = broker.dequeue()
    claim = JobClaim.objects.get(job_id=job_id)
    assert claim.cluster == cluster_holder()
    assert claim.lock == OrmQ.objects.get(pk=job_id).lock
    assert claim.worker == ""

    claim_for_worker(task={"ack_id": job_id})
    assert JobClaim.objects.get(job_id=job_id).worker == here(os.getpid())

    broker.acknowledge(job_id)
    assert not JobClaim.objects.exists()
    assert not OrmQ.objects.exists()


# --- Lost calls -----------------------------------------------------------------------


def pending_call(*, holder, seconds_ago=5, input_tokens=2_000, now, reading=None):
    return LLMCall.objects.create(
        reading=reading,
        task_type="card_interpretation",
        requested_model=MODEL,
        model=MODEL,
        outcome=CallOutcome.PENDING,
        input_tokens=input_tokens,
        latency_s=0,
        holder=holder,
        started_at=now - timedelta(seconds=seconds_ago),
    )


def test_a_dead_workers_call_in_flight_is_booked_lost_at_its_input_tokens_price(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)
    call = pending_call(holder="h:11", now=now)

    assert recovery.recover(now) == recovery.Recovered(lost_calls=1)

    call.refresh_from_db()
    assert call.outcome == CallOutcome.LOST
    assert call.cost_estimated is True
    assert call.cost_usd == cost_of(MODEL, TokenUsage(input_tokens=2_000)) > 0
    assert call.latency_s == pytest.approx(5, abs=0.01)
    assert "h:11 died with the request in flight" in call.error


def test_a_call_in_flight_from_a_gone_process_of_this_host_is_lost_at_once(now, gone_pid):
    call = pending_call(holder=here(gone_pid), seconds_ago=1, now=now)

    recovery.recover(now)

    call.refresh_from_db()
    assert call.outcome == CallOutcome.LOST


def test_a_live_workers_call_in_flight_stays_pending(now):
    beating("h:11", "h:10", seconds_ago=1, now=now)
    call = pending_call(holder="h:11", now=now)

    recovery.recover(now)

    call.refresh_from_db()
    assert call.outcome == CallOutcome.PENDING


def test_a_call_pending_longer_than_any_call_lasts_is_lost_whoever_sent_it(now):
    # The `read` command never beats; nor does a call a live worker abandoned end.
    old = pending_call(holder="cli:5", seconds_ago=16 * 60, now=now)
    recent = pending_call(holder="cli:5", seconds_ago=30, now=now)

    recovery.recover(now)

    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.outcome, recent.outcome) == (CallOutcome.LOST, CallOutcome.PENDING)


def test_a_lost_call_is_booked_once_however_many_siblings_try(now):
    beating("h:11", "h:10", seconds_ago=20, now=now)
    call = pending_call(holder="h:11", now=now)

    assert recovery.book_lost(call.pk, now) is True
    assert recovery.book_lost(call.pk, now) is False
    assert LLMCall.objects.get().outcome == CallOutcome.LOST


def test_an_answer_that_comes_after_all_replaces_the_estimate(now):
    call = pending_call(holder="h:11", now=now)
    recovery.book_lost(call.pk, now)
    estimate = LLMCall.objects.get().cost_usd
    usage = TokenUsage(input_tokens=1_900, output_tokens=300)

    recorded = record_call(
        Attempt(
            task_type="card_interpretation",
            requested_model=MODEL,
            model=MODEL,
            outcome=CallOutcome.OK,
            attempt=1,
            is_retry=False,
            is_fallback=False,
            latency_s=2.0,
            started_at=call.started_at,
            usage=usage,
            call_id=call.pk,
        )
    )

    call.refresh_from_db()
    assert (call.outcome, call.cost_estimated) == (CallOutcome.OK, False)
    assert call.cost_usd == cost_of(MODEL, usage)
    # Budgets were charged the estimate when it was booked: only the difference is left.
    assert recorded.unsettled_usd == call.cost_usd - estimate
    assert LLMCall.objects.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_reading_run_opens_each_calls_row_before_sending_and_completes_it(emulator):
    reading = reading_create(spread="three_card", question="Which way?")

    run_reading_sync(reading.pk)

    calls = LLMCall.objects.filter(reading=reading)
    assert calls.count() == emulator.stats()["requests"] > 0
    assert not calls.exclude(outcome=CallOutcome.OK).exists()
    assert calls.filter(holder="").count() == 0
    assert calls.filter(cost_usd__gt=Decimal(0), cost_estimated=False).count() == calls.count()


# --- The whole story: a cluster killed mid-reading, another started --------------------

RECOVERY_BOUND_S = 30
RESTART_GAP_S = 5  # the next cluster started 5 s after the kill, as in the incident


def as_if_seconds_passed_since_the_kill(seconds):
    """Recovery tells the dead from the age of what they stored: move those timestamps back
    by `seconds` instead of waiting that long (the killed cluster's workers are gone and
    cannot beat or write again)."""
    back = timedelta(seconds=seconds)
    WorkerHeartbeat.objects.update(beat_at=F("beat_at") - back)
    JobClaim.objects.update(claimed_at=F("claimed_at") - back)
    LLMCall.objects.filter(outcome=CallOutcome.PENDING).update(started_at=F("started_at") - back)
    Reading.objects.filter(dispatched_at__isnull=False).update(
        dispatched_at=F("dispatched_at") - back
    )


@pytest.fixture
def clusters(emulator, tmp_path):
    """start(workers) -> a real `manage.py qcluster` with production's timeout and retry (300
    and 360 s): whatever finishes within the bound was not the queue's retry."""
    started = []

    def start(workers, *, launcher=()):
        cluster = WorkerCluster(
            workers=workers,
            base_url=emulator.base_url,
            extra_env={"Q_TIMEOUT_S": "300", "Q_RETRY_S": "360"},
            log_path=tmp_path / f"qcluster-{len(started)}.log",
            launcher=launcher,
        )
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        if cluster.process.poll() is None:
            cluster.stop()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_killed_clusters_readings_are_done_within_30_s_of_a_restart_and_every_call_logged(
    emulator, clusters
):
    # Slow first tokens, so the kill finds calls in flight.
    emulator.configure(ttft_ms=1000, ms_per_token=1)
    readings = [reading_create(spread="three_card", question=f"Question {i}") for i in range(5)]
    for reading in readings:
        enqueue_reading(reading.pk)
    first = clusters(workers=2)

    def calls_in_flight_and_a_task_done():
        return (
            LLMCall.objects.filter(outcome=CallOutcome.PENDING).exists()
            and ReadingTask.objects.filter(status=TaskStatus.DONE).exists()
        )

    wait_for(calls_in_flight_and_a_task_done, timeout=60, explain=first.output, what="a reading")
    first.kill()
    killed_clusters = set(JobClaim.objects.values_list("cluster", flat=True))
    # Two worker processes ran all five at once, and the queue still holds all five jobs,
    # locked for the dead workers: a job stays on the queue until its reading ends.
    assert Reading.objects.filter(status=ReadingStatus.RUNNING).count() == 5
    assert OrmQ.objects.filter(lock__gt=timezone.now()).count() == 5
    as_if_seconds_passed_since_the_kill(RESTART_GAP_S)

    second = clusters(workers=2)
    restarted = time.monotonic()
    wait_for(
        lambda: not JobClaim.objects.filter(cluster__in=killed_clusters).exists(),
        timeout=RECOVERY_BOUND_S,
        explain=second.output,
        what="the killed cluster's jobs to be handed back",
    )
    print(f"\njobs handed back {time.monotonic() - restarted:.1f} s after the restart")
    wait_for(
        lambda: Reading.objects.filter(status=ReadingStatus.DONE).count() == 5,
        timeout=RECOVERY_BOUND_S,
        explain=second.output,
        what="every reading of the killed cluster to be done",
    )
    print(f"all five readings done {time.monotonic() - restarted:.1f} s after the restart")
    wait_for(lambda: not OrmQ.objects.exists(), timeout=10, what="every job to be acknowledged")

    calls = LLMCall.objects.all()
    lost = calls.filter(outcome=CallOutcome.LOST)
    stats = emulator.stats()
    print(f"requests seen: {stats['requests']}, logged: {calls.count()}, lost: {lost.count()}")
    # Every request the provider saw is in the ledger, answered or lost, and none is pending.
    assert calls.count() >= stats["requests"]
    assert set(calls.values_list("outcome", flat=True)) == {CallOutcome.OK, CallOutcome.LOST}
    # (The provider may have finished an answer nobody was left to read: that one is lost.)
    assert lost.count() >= 1
    assert all(call.cost_estimated and call.cost_usd > 0 for call in lost)
    # Nothing ran twice: a task is answered once, and a finished task was not sent again.
    answered = calls.filter(outcome=CallOutcome.OK).values("task").annotate(n=Count("id"))
    assert {row["n"] for row in answered} == {1}
    assert ReadingTask.objects.exclude(status=TaskStatus.DONE).count() == 0
    for reading in readings:
        reading.refresh_from_db()
        assert reading.cost_usd == sum(c.cost_usd for c in calls.filter(reading=reading))


def test_a_call_in_flight_counts_once_it_has_ended_in_reports_and_metrics(staff_client, now):
    pending_call(holder="h:11", now=now)
    LLMCall.objects.filter(pk=pending_call(holder="h:11", now=now).pk).update(
        outcome=CallOutcome.OK
    )

    today = now.date()
    assert cost_summary(start=today, end=today)["totals"]["calls"] == 1
    metrics = staff_client.get("/metrics").content.decode()
    assert 'tarot_llm_calls_in_flight{model="claude-haiku-4-5"} 1.0' in metrics
    assert 'tarot_llm_calls_total{model="claude-haiku-4-5",outcome="ok"} 1.0' in metrics
    assert 'outcome="pending"' not in metrics


# A UTS namespace of its own: the cluster's processes are named "elsewhere:pid", so they look
# like another machine's and only their heartbeats can say they died.
ON_ANOTHER_HOST = ("unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "elsewhere")


def can_run_on_another_host() -> bool:
    try:
        return subprocess.run([*ON_ANOTHER_HOST, "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not can_run_on_another_host(), reason="needs unshare --uts (root)")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_cluster_on_another_host_is_recovered_once_its_heartbeats_are_stale(emulator, clusters):
    emulator.configure(ttft_ms=1000, ms_per_token=1)
    readings = [reading_create(spread="three_card", question=f"Question {i}") for i in range(3)]
    for reading in readings:
        enqueue_reading(reading.pk)
    elsewhere = clusters(workers=2, launcher=ON_ANOTHER_HOST)

    def calls_in_flight_and_a_task_done():
        return (
            LLMCall.objects.filter(outcome=CallOutcome.PENDING).exists()
            and ReadingTask.objects.filter(status=TaskStatus.DONE).exists()
        )

    wait_for(calls_in_flight_and_a_task_done, timeout=60, explain=elsewhere.output, what="a call")
    elsewhere.kill()
    # Two readings running there, one taken ahead: all three held by the other host.
    holders = JobClaim.objects.values_list("cluster", flat=True)
    assert len(holders) == 3 and all(h.startswith("elsewhere:") for h in holders)
    as_if_seconds_passed_since_the_kill(RESTART_GAP_S)

    here_now = clusters(workers=2)
    restarted = time.monotonic()
    wait_for(
        lambda: not JobClaim.objects.filter(cluster__startswith="elsewhere:").exists(),
        timeout=RECOVERY_BOUND_S,
        explain=here_now.output,
        what="the other host's jobs to be handed back",
    )
    print(
        f"\nanother host's jobs handed back {time.monotonic() - restarted:.1f} s after the restart"
    )
    wait_for(
        lambda: Reading.objects.filter(status=ReadingStatus.DONE).count() == 3,
        timeout=RECOVERY_BOUND_S - (time.monotonic() - restarted),
        explain=here_now.output,
        what="every reading of the other host's cluster to be done",
    )
    print(f"all three readings done {time.monotonic() - restarted:.1f} s after the restart")
    assert not LLMCall.objects.filter(outcome=CallOutcome.PENDING).exists()
    lost = LLMCall.objects.filter(outcome=CallOutcome.LOST)
    assert lost.exists()
    assert all(call.holder.startswith("elsewhere:") for call in lost)
    assert LLMCall.objects.count() >= emulator.stats()["requests"]
