"""A permit's exits, on each backend: each says what the call taught the limiter, and a call
that ends any other way (cancelled, our own bug) gives its slot back and teaches nothing."""

import asyncio
import time
from contextlib import suppress

import pytest

from allocation.client_pool import runtime
from allocation.limiter import Permit, get_limiter, get_params
from allocation.outcomes import CallOutcome

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
