"""The shared limiter on each backend (Postgres, then Redis): limits hold across worker
processes and racing threads, a killed worker's share comes back, the controller backs off
and recovers, breakers cycle, and staff see the same state whichever backend holds it."""

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings
from django.db import connection

from allocation.limiter import CallCost, CallReport, get_backend, get_params
from allocation.limiter.backends.postgres import PostgresBackend
from allocation.limiter.backends.redis import RedisBackend
from allocation.limiter.holder import current_holder
from allocation.models import LimitChange, LLMCall, ModelAllocation, ModelLimit, ModelState
from allocation.outcomes import CallOutcome
from benchmarks.workers import database_url
from readings.engine import run_reading_sync
from readings.models import ReadingStatus, TaskStatus
from readings.services import reading_create
from reports.selectors import limits_overview
from tests.allocation.limiter.conftest import REDIS_URL, pending_log_row
from tests.polling import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MODEL = "claude-haiku-5-5"


def run_readings_elsewhere(emulator, *reading_ids, **env) -> subprocess.Popen:
    """`manage.py run_readings` in a process of its own, on the test database."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_readings", *map(str, reading_ids), "--concurrency", "2"],
        cwd=django_settings.BASE_DIR,
        env={
            **os.environ,
            # run_readings is the benchmarks app's, not installed in production's settings.
            "DJANGO_SETTINGS_MODULE": "config.bench_settings",
            "DATABASE_URL": database_url(),
            "ANTHROPIC_BASE_URL": emulator.base_url,
            "ANTHROPIC_API_KEY": "",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def acquire(backend, now: float, params=None) -> int | None:
    params = params or get_params()
    return backend.try_acquire(MODEL, input_estimate=10, params=params, now=now).lease_id


def state_of(backend, model: str = MODEL):
    return backend.snapshots(now=time.time(), model=model)[model].state


def in_flight(backend, now: float) -> int:
    snapshot = backend.snapshots(now=now, model=MODEL).get(MODEL)
    return snapshot.in_flight if snapshot else 0


def cool_down_passes(backend, model: str) -> None:
    """As if the open breaker's cool-down had passed: its opening, stored in the backend,
    moves back by the cool-down."""
    cooldown_s = get_params().breaker.cooldown_s

    def opened_earlier(locked):
        breaker = locked.state.breaker
        assert breaker["state"] == "open", breaker
        breaker["opened_at"] -= cooldown_s + 0.1

    backend.atomically(model, now=backend.clock(), lease_id=None, decide=opened_earlier)


def test_the_setting_picks_the_backend(settings):
    settings.LLM_LIMITER_REDIS_URL = REDIS_URL
    assert isinstance(get_backend(), RedisBackend)
    settings.LLM_LIMITER_REDIS_URL = ""
    assert isinstance(get_backend(), PostgresBackend)


def test_the_limit_holds_across_two_worker_processes(emulator, backend, backend_env):
    # One model for every task, so the emulator's peak is that model's (limits are per model).
    ModelAllocation.objects.update(model=MODEL, fallback_models="")
    ModelLimit.objects.update(max_concurrent_calls=3)
    emulator.configure(ttft_ms=300)
    first = reading_create(spread="celtic_cross", question="One?")
    second = reading_create(spread="celtic_cross", question="Two?")

    workers = [run_readings_elsewhere(emulator, r.pk, **backend_env) for r in (first, second)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read().decode()[-2000:]

    # Eight card batches wanted to run at once; the shared limit let three through.
    assert emulator.stats()["peak_concurrency"] == 3
    first.refresh_from_db(), second.refresh_from_db()
    assert first.status == second.status == ReadingStatus.DONE
    assert in_flight(backend, time.time()) == 0, "every slot went back"
    assert ModelState.objects.filter(model=MODEL).exists(), "staff pages list the model"


def test_a_killed_workers_share_comes_back_within_seconds(emulator, settings, backend, backend_env):
    settings.LLM_LIMITER = {"lease_ttl_s": 2.0}
    ModelLimit.objects.update(max_concurrent_calls=3)
    emulator.configure(hang_rate=1.0)  # calls never answer: the worker holds its slots
    reading = reading_create(spread="celtic_cross", question="Stuck?")
    worker = run_readings_elsewhere(emulator, reading.pk, LLM_LEASE_TTL_S="2", **backend_env)
    wait_for(lambda: in_flight(backend, time.time()) == 3, timeout=60, what="3 leases")
    # The live worker's renewals keep its slots: leases still live at a moment past their
    # first expiry (at most 2 s after they were seen) are renewed ones.
    past_their_first_expiry = time.time() + 2.5
    wait_for(
        lambda: in_flight(backend, past_their_first_expiry) == 3,
        timeout=10,
        what="the live worker to renew its 3 leases past their first expiry",
    )
    assert in_flight(backend, time.time()) == 3

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    params = get_params()
    killed_at = time.time()
    assert acquire(backend, killed_at, params) is None

    wait_for(
        lambda: acquire(backend, time.time(), params),
        timeout=10,
        what="the killed worker's slots to come back",
    )
    assert time.time() - killed_at <= params.lease_ttl_s + 1.0


def test_the_controller_halves_on_an_unexplained_429_and_grows_back_while_healthy(backend):
    params = get_params()
    now = time.time()
    lease = acquire(backend, now, params)

    backend.release(lease, MODEL, CallReport("rate_limited", latency_s=0.1), params=params, now=now)

    cut = state_of(backend).adaptive["limit"]
    assert cut == params.aimd.initial_limit // 2
    assert LimitChange.objects.filter(model=MODEL, reason="rate_limited", limit=cut).exists()

    # Healthy calls with the limit well used: one step up per window of `limit` successes.
    later = now + 5
    for _ in range(3 * cut):
        leases = [acquire(backend, later, params) for _ in range(cut)]
        assert None not in leases
        for lease in leases:
            ok = CallReport("ok", latency_s=1.0, input_tokens=10, output_tokens=200)
            backend.release(lease, MODEL, ok, params=params, now=later)
        later += 1.0
    assert state_of(backend).adaptive["limit"] > cut
    assert LimitChange.objects.filter(model=MODEL, reason="increase").exists()


def test_a_429_with_an_empty_bucket_pauses_the_model_for_its_retry_after(backend):
    params = get_params()
    now = time.time()
    lease = acquire(backend, now, params)
    headers = {"retry-after": "2", "anthropic-ratelimit-requests-remaining": "0"}

    backend.release(
        lease, MODEL, CallReport("rate_limited", headers=headers), params=params, now=now
    )

    assert state_of(backend).adaptive["limit"] == params.aimd.initial_limit, (
        "a rate 429 is the buckets' job"
    )
    refused = backend.try_acquire(MODEL, input_estimate=10, params=params, now=now + 1)
    assert refused.lease_id is None and refused.wait_s == pytest.approx(1.0, abs=0.01)
    assert acquire(backend, now + 2.5, params)


def test_a_failing_model_trips_its_breaker_and_is_probed_again_after_the_cooldown(
    emulator, settings, backend
):
    # A cool-down long enough that the third reading starts inside it on a busy machine.
    settings.LLM_LIMITER = {"breaker": {"min_calls": 2, "cooldown_s": 3.0}}
    emulator.configure(failing_models=frozenset({MODEL}))

    for _ in range(2):
        run_reading_sync(reading_create(spread="three_card", question="Fail?").pk)
    assert state_of(backend).breaker["state"] == "open"
    calls_while_failing = emulator.stats()["by_model"][MODEL]["requests"]

    open_reading = run_reading_sync(reading_create(spread="three_card", question="Open?").pk)

    assert open_reading.status == ReadingStatus.DONE
    assert emulator.stats()["by_model"][MODEL]["requests"] == calls_while_failing
    card = open_reading.tasks.get(task_type="card_interpretation")
    assert (card.status, card.model_used) == (TaskStatus.DONE, "claude-haiku-4-5")

    emulator.configure(failing_models=frozenset())
    cool_down_passes(backend, MODEL)
    probed = run_reading_sync(reading_create(spread="three_card", question="Healed?").pk)

    assert probed.tasks.get(task_type="card_interpretation").model_used == MODEL
    assert state_of(backend).breaker["state"] == "closed"
    reasons = list(
        LimitChange.objects.filter(model=MODEL)
        .order_by("created_at")
        .values_list("reason", flat=True)
    )
    assert reasons == ["breaker_open", "breaker_half_open", "breaker_closed"]


def test_a_half_open_breaker_lets_one_probe_through_at_a_time(settings, backend):
    settings.LLM_LIMITER = {"breaker": {"min_calls": 2, "cooldown_s": 1.0}}
    params = get_params()
    now = time.time()
    for _ in range(2):
        failed = CallReport("error", latency_s=0.1)  # a 5xx: neutral to the limit
        backend.release(acquire(backend, now, params), MODEL, failed, params=params, now=now)
    refused = backend.try_acquire(MODEL, input_estimate=10, params=params, now=now + 0.5)
    assert refused.breaker_open

    probe = acquire(backend, now + 1.1, params)
    assert probe is not None
    second = backend.try_acquire(MODEL, input_estimate=10, params=params, now=now + 1.1)
    assert second.breaker_open, "one probe at a time"
    ok = CallReport("ok", latency_s=1.0, output_tokens=100)
    backend.release(probe, MODEL, ok, params=params, now=now + 1.2)

    assert state_of(backend).breaker["state"] == "closed"


def test_racing_threads_get_exactly_the_free_slots(backend):
    ModelLimit.objects.update(max_concurrent_calls=4)
    params = get_params()
    now = time.time()
    start = threading.Barrier(10)

    def race(_):
        start.wait()
        try:
            return acquire(backend, now, params)
        finally:
            connection.close()

    with ThreadPoolExecutor(10) as pool:
        leases = [lease for lease in pool.map(race, range(10)) if lease is not None]

    assert len(leases) == len(set(leases)) == 4
    assert in_flight(backend, now) == 4


def test_leases_are_renewed_while_held_and_ignored_ones_free_their_slot(backend):
    ModelLimit.objects.update(max_concurrent_calls=2)
    params = get_params()
    now = time.time()
    kept, ignored = acquire(backend, now, params), acquire(backend, now, params)
    assert acquire(backend, now, params) is None

    backend.release(ignored, MODEL, None, params=params, now=now)
    assert in_flight(backend, now) == 1

    assert backend.renew(params, now + params.lease_ttl_s - 1) == 1
    # Past the first expiry the renewed lease still counts; past the renewed one it does not.
    assert in_flight(backend, now + params.lease_ttl_s + 1) == 1
    assert in_flight(backend, now + 2 * params.lease_ttl_s) == 0
    assert backend.holders(MODEL, now=now + params.lease_ttl_s) == {current_holder(): 1}
    assert kept is not None


def test_an_ignored_call_teaches_the_limiter_nothing(settings, backend):
    settings.LLM_LIMITER = {"breaker": {"min_calls": 1}}
    params = get_params()
    now = time.time()
    backend.release(acquire(backend, now, params), MODEL, None, params=params, now=now)

    state = state_of(backend)
    assert state.breaker.get("state", "closed") == "closed"
    assert state.adaptive.get("limit", params.aimd.initial_limit) == params.aimd.initial_limit
    assert not LimitChange.objects.exists()


def test_on_postgres_an_admitted_calls_pending_log_row_is_written_with_its_admission(backend):
    reading = reading_create(spread="three_card", question="Which way?")
    costs = [CallCost(10, 100, pending_log_row(MODEL, reading_id=reading.pk)) for _ in range(2)]

    admitted = backend.try_acquire_many(MODEL, costs=costs, params=get_params(), now=time.time())

    assert all(admission.lease_id is not None for admission in admitted)
    if backend.name == "postgres":
        calls = LLMCall.objects.filter(pk__in=[a.call_id for a in admitted])
        assert {(c.outcome, c.reading_id, c.holder) for c in calls} == {
            (CallOutcome.PENDING, reading.pk, current_holder())
        }
        assert calls.count() == 2
    else:  # the caller writes it (open_call)
        assert [a.call_id for a in admitted] == [None, None]
        assert not LLMCall.objects.exists()


def test_a_log_row_that_cannot_be_written_refuses_no_call_of_the_step(backend):
    reading = reading_create(spread="three_card", question="Which way?")
    gone = pending_log_row(MODEL, reading_id="00000000-0000-0000-0000-000000000000")
    costs = [
        CallCost(10, 100, pending_log_row(MODEL, reading_id=reading.pk)),
        CallCost(10, 100, gone),
    ]

    admitted = backend.try_acquire_many(MODEL, costs=costs, params=get_params(), now=time.time())

    # Both are admitted; each caller writes its own row (and the one whose reading is gone
    # fails alone, as it would have before).
    assert [a.lease_id is not None for a in admitted] == [True, True]
    assert [a.call_id for a in admitted] == [None, None]
    assert not LLMCall.objects.exists()
    assert in_flight(backend, time.time()) == 2


def test_staff_see_the_calls_in_flight_and_the_state(staff_client, backend):
    ModelLimit.objects.update_or_create(model="*", defaults={"max_concurrent_calls": 10})
    params = get_params()
    now = time.time()
    for _ in range(3):
        acquire(backend, now, params)
    backend.release(
        acquire(backend, now, params), MODEL, CallReport("rate_limited"), params=params, now=now
    )

    [row] = limits_overview()
    assert (row["model"], row["in_flight"]) == (MODEL, 3)
    assert row["adaptive_limit"] == params.aimd.initial_limit // 2
    page = staff_client.get("/admin/allocation/modelstate/").content.decode()
    assert '<td class="field-calls_in_flight">3</td>' in page
    assert f'<td class="field-adaptive_limit">{params.aimd.initial_limit // 2}</td>' in page


def test_a_reset_forgets_every_model_and_lease(backend):
    acquire(backend, time.time())

    backend.reset()

    assert backend.snapshots(now=time.time()) == {}


def test_a_redis_that_does_not_answer_fails_fast_with_a_clear_message(settings):
    settings.LLM_LIMITER_REDIS_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"Redis at redis://127.0.0.1:1/0 is not answering"):
        acquire(get_backend(), time.time())
    assert time.monotonic() - started < 5
