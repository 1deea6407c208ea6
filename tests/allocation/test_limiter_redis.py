"""The global limiter through Redis (settings.LLM_LIMITER_REDIS_URL): limits hold across
workers and racing threads, a killed worker's share comes back, the controller backs off and
recovers, breakers cycle, and a Redis that does not answer says so."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.db import connection

from allocation import limiter_redis
from allocation.limiter import Outcome, backend, get_params
from allocation.models import Lease, LimitChange, ModelAllocation, ModelLimit, ModelState
from readings.models import ReadingStatus
from readings.services import reading_create
from tests.allocation.test_limiter import MODEL, run_readings_elsewhere
from tests.polling import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# A database of its own, flushed around every test (TEST_REDIS_URL lets two suites run side by
# side on one Redis).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

try:
    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
except redis.RedisError as exc:
    pytest.fail(
        f"Redis is not answering at 127.0.0.1:6379 ({exc}): start it with: "
        "redis-server --daemonize yes --save '' --appendonly no",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def redis_db(settings):
    settings.LLM_LIMITER_REDIS_URL = REDIS_URL
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.flushdb()
    limiter_redis.forget_cached()
    yield client
    client.flushdb()
    limiter_redis.forget_cached()
    client.close()


def acquire(now: float, params=None) -> int | None:
    params = params or get_params()
    return limiter_redis.try_acquire(MODEL, input_estimate=10, params=params, now=now).lease_id


def test_the_setting_picks_the_redis_backend(settings):
    assert backend() is limiter_redis
    settings.LLM_LIMITER_REDIS_URL = ""
    assert backend().__name__ == "allocation.limiter"


def test_the_limit_holds_across_two_worker_processes(emulator, redis_db):
    ModelAllocation.objects.update(model=MODEL, fallback_models="")
    ModelLimit.objects.update(max_concurrent_calls=3)
    emulator.configure(ttft_ms=300)
    first = reading_create(spread="celtic_cross", question="One?")
    second = reading_create(spread="celtic_cross", question="Two?")

    workers = [
        run_readings_elsewhere(emulator, r.pk, LLM_LIMITER_REDIS_URL=REDIS_URL)
        for r in (first, second)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read().decode()[-2000:]

    assert emulator.stats()["peak_concurrency"] == 3
    first.refresh_from_db(), second.refresh_from_db()
    assert first.status == second.status == ReadingStatus.DONE
    # The leases lived in Redis, and all went back.
    assert not Lease.objects.exists()
    assert redis_db.exists(f"llm_limiter:{MODEL}:state")
    assert redis_db.zcard(f"llm_limiter:{MODEL}:leases") == 0
    # Staff still see the model in the admin: its state is mirrored into Postgres.
    assert ModelState.objects.filter(model=MODEL).exists()


def test_a_killed_workers_share_comes_back_within_seconds(emulator, settings):
    settings.LLM_LIMITER = {"lease_ttl_s": 2.0}
    ModelLimit.objects.update(max_concurrent_calls=3)
    emulator.configure(hang_rate=1.0)  # calls never answer: the worker holds its slots
    reading = reading_create(spread="celtic_cross", question="Stuck?")
    worker = run_readings_elsewhere(
        emulator, reading.pk, LLM_LEASE_TTL_S="2", LLM_LIMITER_REDIS_URL=REDIS_URL
    )
    wait_for(lambda: limiter_redis.in_flight(MODEL, time.time()) == 3, timeout=60, what="3 leases")
    time.sleep(2.5)  # past the first expiry: the live worker's renewals keep its slots
    assert limiter_redis.in_flight(MODEL, time.time()) == 3

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    params = get_params()
    killed_at = time.time()
    assert acquire(killed_at, params) is None

    wait_for(
        lambda: acquire(time.time(), params),
        timeout=10,
        what="the killed worker's slots to come back",
    )
    assert time.time() - killed_at <= params.lease_ttl_s + 1.0


def test_the_controller_halves_on_an_unexplained_429_and_grows_back_while_healthy():
    params = get_params()
    now = time.time()
    lease = acquire(now, params)

    limiter_redis.release(
        lease, MODEL, Outcome(outcome="rate_limited", latency_s=0.1), params=params, now=now
    )

    cut = limiter_redis.load_state(MODEL).adaptive["limit"]
    assert cut == params.aimd.initial_limit // 2
    assert LimitChange.objects.filter(model=MODEL, reason="rate_limited", limit=cut).exists()
    assert ModelState.objects.get(model=MODEL).adaptive["limit"] == cut  # mirrored at once

    later = now + 5
    for _ in range(3 * cut):
        leases = [acquire(later, params) for _ in range(cut)]
        assert None not in leases
        for lease in leases:
            ok = Outcome(outcome="ok", latency_s=1.0, input_tokens=10, output_tokens=200)
            limiter_redis.release(lease, MODEL, ok, params=params, now=later)
        later += 1.0
    grown = limiter_redis.load_state(MODEL).adaptive["limit"]
    assert grown > cut
    assert LimitChange.objects.filter(model=MODEL, reason="increase").exists()
    assert ModelState.objects.get(model=MODEL).adaptive["limit"] == grown


def test_a_failing_model_trips_its_breaker_and_is_probed_again_after_the_cooldown(settings):
    settings.LLM_LIMITER = {"breaker": {"failure_threshold": 2, "cooldown_s": 1.0}}
    params = get_params()
    now = time.time()
    for _ in range(2):
        failed = Outcome(outcome="error", latency_s=0.1)  # a 5xx: neutral to the limit
        limiter_redis.release(acquire(now, params), MODEL, failed, params=params, now=now)
    assert limiter_redis.load_state(MODEL).breaker["state"] == "open"
    refused = limiter_redis.try_acquire(MODEL, input_estimate=10, params=params, now=now + 0.5)
    assert refused.breaker_open

    probe = acquire(now + 1.1, params)
    assert probe is not None
    second = limiter_redis.try_acquire(MODEL, input_estimate=10, params=params, now=now + 1.1)
    assert second.breaker_open, "one probe at a time"
    ok = Outcome(outcome="ok", latency_s=1.0, output_tokens=100)
    limiter_redis.release(probe, MODEL, ok, params=params, now=now + 1.2)

    assert limiter_redis.load_state(MODEL).breaker["state"] == "closed"
    assert ModelState.objects.get(model=MODEL).breaker["state"] == "closed"
    reasons = list(
        LimitChange.objects.filter(model=MODEL)
        .order_by("created_at")
        .values_list("reason", flat=True)
    )
    assert reasons == ["breaker_open", "breaker_half_open", "breaker_closed"]


def test_twenty_threads_racing_for_five_slots_get_exactly_five():
    ModelLimit.objects.update(max_concurrent_calls=5)
    params = get_params()
    limiter_redis.cached_limits(MODEL)  # read here, not in twenty threads' connections
    now = time.time()
    start = threading.Barrier(20)

    def race(_):
        start.wait()
        try:
            return acquire(now, params)
        finally:
            connection.close()

    with ThreadPoolExecutor(20) as pool:
        leases = [lease for lease in pool.map(race, range(20)) if lease is not None]

    assert len(leases) == len(set(leases)) == 5
    assert limiter_redis.in_flight(MODEL, now) == 5


def test_leases_are_renewed_while_held_and_discarded_ones_free_their_slot():
    ModelLimit.objects.update(max_concurrent_calls=2)
    params = get_params()
    now = time.time()
    kept, discarded = acquire(now, params), acquire(now, params)
    assert acquire(now, params) is None

    limiter_redis.discard_lease(discarded)
    assert limiter_redis.in_flight(MODEL, now) == 1

    assert limiter_redis.renew_leases(params, now + params.lease_ttl_s - 1) == 1
    # Past the first expiry the renewed lease still counts; past the renewed one it does not.
    assert limiter_redis.in_flight(MODEL, now + params.lease_ttl_s + 1) == 1
    assert limiter_redis.in_flight(MODEL, now + 2 * params.lease_ttl_s) == 0
    assert kept is not None


def test_a_redis_that_does_not_answer_fails_fast_with_a_clear_message(settings):
    settings.LLM_LIMITER_REDIS_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"Redis at redis://127.0.0.1:1/0 is not answering"):
        acquire(time.time())
    assert time.monotonic() - started < 5
