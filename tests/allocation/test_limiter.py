"""The global limiter, through Postgres and real processes: limits hold across workers, a
killed worker's share comes back, the controller backs off and recovers, breakers cycle."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings

from allocation.limiter import Outcome, get_params, release, try_acquire
from allocation.models import Lease, LimitChange, ModelAllocation, ModelLimit, ModelState
from benchmarks.workers import database_url
from readings.engine import run_reading_sync
from readings.models import ReadingStatus, TaskStatus
from readings.services import reading_create
from tests.polling import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MODEL = "claude-haiku-5-5"


def run_readings_elsewhere(emulator, *reading_ids, **env) -> subprocess.Popen:
    """`manage.py run_readings` in a process of its own, on the test database."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_readings", *map(str, reading_ids), "--concurrency", "2"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "ANTHROPIC_BASE_URL": emulator.base_url,
            "ANTHROPIC_API_KEY": "",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_the_limit_holds_across_two_worker_processes(emulator):
    # One model for every task, so the emulator's peak is that model's (limits are per model).
    ModelAllocation.objects.update(model=MODEL, fallback_models="")
    ModelLimit.objects.update(max_concurrent_calls=3)
    emulator.configure(ttft_ms=300)
    first = reading_create(spread="celtic_cross", question="One?")
    second = reading_create(spread="celtic_cross", question="Two?")

    workers = [run_readings_elsewhere(emulator, r.pk) for r in (first, second)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read().decode()[-2000:]

    # Eight card batches wanted to run at once; the shared limit let three through.
    assert emulator.stats()["peak_concurrency"] == 3
    first.refresh_from_db(), second.refresh_from_db()
    assert first.status == second.status == ReadingStatus.DONE


def test_a_killed_workers_share_comes_back_within_seconds(emulator, settings):
    settings.LLM_LIMITER = {"lease_ttl_s": 2.0}
    ModelLimit.objects.update(max_concurrent_calls=3)
    emulator.configure(hang_rate=1.0)  # calls never answer: the worker holds its slots
    reading = reading_create(spread="celtic_cross", question="Stuck?")
    worker = run_readings_elsewhere(emulator, reading.pk, LLM_LEASE_TTL_S="2")
    wait_for(lambda: Lease.objects.filter(model=MODEL).count() == 3, timeout=60, what="3 leases")

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    params = get_params()
    killed_at = time.time()
    assert try_acquire(MODEL, input_estimate=10, params=params, now=killed_at).lease_id is None

    wait_for(
        lambda: try_acquire(MODEL, input_estimate=10, params=params, now=time.time()).lease_id,
        timeout=10,
        what="the killed worker's slots to come back",
    )
    assert time.time() - killed_at <= params.lease_ttl_s + 1.0


def test_the_controller_halves_on_an_unexplained_429_and_grows_back_while_healthy(db):
    params = get_params()
    now = time.time()
    lease = try_acquire(MODEL, input_estimate=10, params=params, now=now).lease_id

    release(lease, MODEL, Outcome(outcome="rate_limited", latency_s=0.1), params=params, now=now)

    cut = ModelState.objects.get(model=MODEL).adaptive["limit"]
    assert cut == params.aimd.initial_limit // 2
    assert LimitChange.objects.filter(model=MODEL, reason="rate_limited", limit=cut).exists()

    # Healthy calls with the limit well used: one step up per window of `limit` successes.
    later = now + 5
    for _ in range(3 * cut):
        leases = [
            try_acquire(MODEL, input_estimate=10, params=params, now=later).lease_id
            for _ in range(cut)
        ]
        for lease in leases:
            ok = Outcome(outcome="ok", latency_s=1.0, input_tokens=10, output_tokens=200)
            release(lease, MODEL, ok, params=params, now=later)
        later += 1.0
    assert ModelState.objects.get(model=MODEL).adaptive["limit"] > cut
    assert LimitChange.objects.filter(model=MODEL, reason="increase").exists()


def test_a_429_with_an_empty_bucket_pauses_the_model_for_its_retry_after(db):
    params = get_params()
    now = time.time()
    lease = try_acquire(MODEL, input_estimate=10, params=params, now=now).lease_id
    headers = {"retry-after": "2", "anthropic-ratelimit-requests-remaining": "0"}

    release(lease, MODEL, Outcome(outcome="rate_limited", headers=headers), params=params, now=now)

    state = ModelState.objects.get(model=MODEL)
    assert state.adaptive["limit"] == params.aimd.initial_limit, "a rate 429 is the buckets' job"
    refused = try_acquire(MODEL, input_estimate=10, params=params, now=now + 1)
    assert refused.lease_id is None and refused.wait_s == pytest.approx(1.0, abs=0.01)
    assert try_acquire(MODEL, input_estimate=10, params=params, now=now + 2.5).lease_id


def test_a_failing_model_trips_its_breaker_and_is_probed_again_after_the_cooldown(
    emulator, settings
):
    settings.LLM_LIMITER = {"breaker": {"failure_threshold": 2, "cooldown_s": 1.0}}
    emulator.configure(failing_models=frozenset({MODEL}))

    for _ in range(2):
        run_reading_sync(reading_create(spread="three_card", question="Fail?").pk)
    assert ModelState.objects.get(model=MODEL).breaker["state"] == "open"
    calls_while_failing = emulator.stats()["by_model"][MODEL]["requests"]

    open_reading = run_reading_sync(reading_create(spread="three_card", question="Open?").pk)

    assert open_reading.status == ReadingStatus.DONE
    assert emulator.stats()["by_model"][MODEL]["requests"] == calls_while_failing
    card = open_reading.tasks.get(task_type="card_interpretation")
    assert (card.status, card.model_used) == (TaskStatus.DONE, "claude-haiku-4-5")

    emulator.configure(failing_models=frozenset())
    time.sleep(1.1)
    probed = run_reading_sync(reading_create(spread="three_card", question="Healed?").pk)

    assert probed.tasks.get(task_type="card_interpretation").model_used == MODEL
    assert ModelState.objects.get(model=MODEL).breaker["state"] == "closed"
    reasons = list(
        LimitChange.objects.filter(model=MODEL)
        .order_by("created_at")
        .values_list("reason", flat=True)
    )
    assert reasons == ["breaker_open", "breaker_half_open", "breaker_closed"]
