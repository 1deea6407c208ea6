"""Recovery from dead workers (readings/recovery.py): whose jobs go back on the queue, and
which calls in flight are booked as lost. The whole story, with real clusters killed and
restarted, is in test_recovery_after_a_crash.py."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ

from allocation.models import LLMCall
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage, cost_of
from allocation.usage import Attempt, record_call
from operations.models import JobClaim, WorkerHeartbeat
from readings import recovery
from readings.broker import claim_for_worker, cluster_holder
from readings.engine import run_reading_sync
from readings.services import reading_create

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
    assert JobClaim.objects.get(job_id=job_id).worker.endswith(":" + str(__import__("os").getpid()))

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


@pytest.mark.django_db(transaction=True)
def test_a_reading_run_opens_each_calls_row_before_sending_and_completes_it(emulator):
    reading = reading_create(spread="three_card", question="Which way?")

    run_reading_sync(reading.pk)

    calls = LLMCall.objects.filter(reading=reading)
    assert calls.count() == emulator.stats()["requests"] > 0
    assert not calls.exclude(outcome=CallOutcome.OK).exists()
    assert calls.filter(holder="").count() == 0
    assert calls.filter(cost_usd__gt=Decimal(0), cost_estimated=False).count() == calls.count()
