"""A permit's exits, on each backend: each says what the call taught the limiter, and a call
that ends any other way (cancelled, our own bug) gives its slot back and teaches nothing."""

import asyncio
import time
from contextlib import suppress

import pytest
from asgiref.sync import sync_to_async

from allocation.client_pool import runtime
from allocation.limiter import Permit, get_limiter, get_params
from allocation.models import LLMCall, ModelLimit
from allocation.outcomes import CallOutcome
from readings.services import reading_create
from tests.allocation.limiter.conftest import pending_log_row

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MODEL = "claude-haiku-5-5"


@pytest.fixture
def limiter_loop(close_engine_connections):
    """Runs a scenario on the process's LLM loop, where the engine runs."""
    return runtime.run


def snapshot(backend):
    return backend.snapshots(now=time.time(), model=MODEL)[MODEL]


def test_a_cancelled_call_is_ignored_and_gives_its_slot_back(settings, backend, limiter_loop):
    settings.LLM_LIMITER = {"breaker": {"min_calls": 1}}

    async def cancelled_mid_call():
        entered = asyncio.Event()

        async def call():
            async with get_limiter().permit(MODEL, input_estimate=10):
                entered.set()
                await asyncio.sleep(60)  # the HTTP call, cancelled before it answers

        task = asyncio.create_task(call())
        await entered.wait()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    limiter_loop(cancelled_mid_call())

    state = snapshot(backend)
    assert state.in_flight == 0
    assert state.state.breaker.get("failures", 0) == 0, "a cancellation is not the model's fault"
    assert state.state.breaker.get("state", "closed") == "closed"


def test_a_call_cancelled_before_it_leaves_leaves_no_log_row_to_book(
    settings, backend, limiter_loop
):
    if backend.name != "postgres":
        pytest.skip("only the Postgres backend writes the log row with the admission")
    # One request a second and its only token taken: the call is admitted with the next
    # token reserved a second ahead, and waits for it before it leaves.
    settings.LLM_LIMITER = {"reserve_s": 5.0}
    ModelLimit.objects.update(requests_per_minute=60)
    backend.try_acquire(MODEL, input_estimate=10, params=get_params(), now=backend.clock())
    reading = reading_create(spread="three_card", question="Stay?")
    row = pending_log_row(MODEL, reading_id=reading.pk)

    async def cancelled_before_sending():
        async def call():
            async with get_limiter().permit(MODEL, input_estimate=10, log_row=row):
                raise AssertionError("the request must not leave")

        task = asyncio.create_task(call())
        while not await sync_to_async(LLMCall.objects.exists)():
            await asyncio.sleep(0.01)  # admitted, its row written: now waiting for its token
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    limiter_loop(cancelled_before_sending())

    assert not LLMCall.objects.exists(), "an unsent call is never booked as lost"
    assert snapshot(backend).in_flight == 1  # the token's taker's, not the cancelled call's


def test_a_call_cancelled_as_it_is_admitted_gives_its_slot_back_and_leaves_no_row(
    backend, limiter_loop
):
    if backend.name != "postgres":
        pytest.skip("only the Postgres backend writes the log row with the admission")
    reading = reading_create(spread="three_card", question="Stay?")
    row = pending_log_row(MODEL, reading_id=reading.pk)

    async def cancelled_as_admitted():
        limiter = get_limiter()

        async def call():
            async with limiter.permit(MODEL, input_estimate=10, log_row=row):
                raise AssertionError("the request must not leave")

        task = asyncio.create_task(call())
        queue = limiter._queue(MODEL)
        while not queue.entries:
            await asyncio.sleep(0)
        waiting = queue.entries[0].future
        while not waiting.done():
            await asyncio.sleep(0)
        # The admission is answered, and the caller has not run since: cancelled now, the
        # answer never reaches it.
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    limiter_loop(cancelled_as_admitted())

    assert not LLMCall.objects.exists(), "an unsent call is never booked as lost"
    assert snapshot(backend).in_flight == 0


def test_a_permit_left_without_an_exit_is_a_bug_that_still_gives_its_slot_back(
    backend, limiter_loop
):
    async def forgetful():
        async with get_limiter().permit(MODEL, input_estimate=10):
            pass

    with pytest.raises(RuntimeError, match="left without an exit"):
        limiter_loop(forgetful())

    assert snapshot(backend).in_flight == 0


def test_a_failure_counts_toward_the_breaker_and_a_429_does_not(backend, limiter_loop):
    async def calls():
        async with get_limiter().permit(MODEL, input_estimate=10) as permit:
            permit.rate_limited(latency_s=0.1, headers={})
        async with get_limiter().permit(MODEL, input_estimate=10) as permit:
            permit.failed(CallOutcome.OVERLOADED, latency_s=0.1)

    limiter_loop(calls())

    state = snapshot(backend).state
    assert state.breaker["failures"] == 1
    # The 429 halved the limit; the overload came within the cool-down of that cut.
    assert state.adaptive["limit"] == get_params().aimd.initial_limit // 2


def test_a_success_settles_the_real_tokens_and_the_breaker_stays_closed(backend, limiter_loop):
    async def calls():
        async with get_limiter().permit(MODEL, input_estimate=10) as permit:
            permit.failed(CallOutcome.TIMEOUT, latency_s=1.0)
        async with get_limiter().permit(MODEL, input_estimate=10) as permit:
            permit.success(latency_s=1.0, input_tokens=10, output_tokens=200)

    limiter_loop(calls())

    state = snapshot(backend).state
    # One failure in two calls, below the breaker's minimum number of calls.
    assert (state.breaker["state"], state.breaker["failures"]) == ("closed", 1)
    assert state.adaptive["smoothed_rtt"] == pytest.approx(1.0 / 200)


def test_a_permit_has_exactly_one_exit_and_only_failures_fail():
    permit = Permit()
    with pytest.raises(ValueError, match="a failed call is one of"):
        permit.failed(CallOutcome.RATE_LIMITED, latency_s=0.1)
    permit.ignore()
    with pytest.raises(RuntimeError, match="exactly one exit"):
        permit.success(latency_s=0.1, input_tokens=1, output_tokens=1)


# --- When a token limit binds ----------------------------------------------------------
# 6,000 output tokens a minute: 100 a second, a bucket of 90 in the platform's limiter. Each
# call holds 90 (its max_tokens) and writes 30: the next call waits for the 60 it gives back.


@pytest.fixture
def output_bound(backend):
    from allocation.limiter.backends import forget_limits
    from allocation.models import ModelLimit

    ModelLimit.objects.update(output_tokens_per_minute=6_000)
    forget_limits()
    return backend


async def a_call(order=None, *, log=None, name=""):
    async with get_limiter().permit(MODEL, input_estimate=10, max_tokens=90, order=order) as p:
        if log is not None:
            log.append(name)
        await asyncio.sleep(0.05)
        p.success(latency_s=0.05, input_tokens=10, output_tokens=30)


def test_a_call_waiting_for_tokens_costs_no_round_trips_beyond_its_admission_and_release(
    output_bound, limiter_loop
):
    async def twelve_at_once():
        await asyncio.gather(*(a_call() for _ in range(12)))

    started = time.monotonic()
    limiter_loop(twelve_at_once())

    # One at a time, each after the one before gave its tokens back: the waits were real.
    assert time.monotonic() - started > 11 * 0.05
    assert snapshot(output_bound).in_flight == 0
    transactions = snapshot(output_bound).state.transactions
    assert transactions <= 3 * 12, f"{transactions} round trips for 12 calls"


def test_the_unused_max_tokens_come_back_when_the_call_is_settled(output_bound, limiter_loop):
    limiter_loop(a_call())

    state = snapshot(output_bound).state
    # Full (90), less the 90 held, plus the 60 unwritten given back (and a little refill).
    assert 60 <= state.output_tokens <= 90


def test_while_the_limits_bind_the_reading_that_came_first_goes_first(output_bound, limiter_loop):
    from allocation.limiter import CallOrder

    log = []

    async def readings():
        # Two readings: the older has only its last call (advice) left; the newer, all its
        # card calls. Critical-path order would send the newer's cards first.
        calls = [
            a_call(CallOrder("newer", 101.0, stages_left=3), log=log, name="newer")
            for _ in range(4)
        ]
        calls.insert(2, a_call(CallOrder("older", 100.0, stages_left=1), log=log, name="older"))
        await asyncio.gather(*calls)

    limiter_loop(readings())

    # The first call goes before the others have joined; after it, the older reading first.
    assert log.index("older") <= 1


def test_the_wait_is_recorded_against_the_limit_that_caused_it(output_bound, limiter_loop):
    async def four_at_once():
        await asyncio.gather(*(a_call() for _ in range(4)))

    limiter_loop(four_at_once())

    from allocation.limiter.decisions import seconds_bound

    bound = seconds_bound(snapshot(output_bound).state, since=time.time() - 60)
    assert set(bound) == {"otpm"}
    assert bound["otpm"] > 0.05
