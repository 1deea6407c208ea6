import json

import pytest

from allocation.circuit_breaker import (
    BreakerParams,
    BreakerState,
    CircuitBreaker,
    counts_as_failure,
)

NOW = 1_000.0
COOLDOWN = BreakerParams().cooldown_s


def failing(times: int, *, now=NOW, **params) -> CircuitBreaker:
    breaker = CircuitBreaker(BreakerParams(**params))
    for _ in range(times):
        breaker.record_failure(now)
    return breaker


def opened(**params) -> CircuitBreaker:
    return failing(BreakerParams(**params).min_calls, **params)


def mixed(calls: int, *, failure_every: int, start=NOW, spacing=0.1, **params) -> CircuitBreaker:
    """`calls` calls `spacing` seconds apart, every `failure_every`-th one failing."""
    breaker = CircuitBreaker(BreakerParams(**params))
    for i in range(calls):
        if (i + 1) % failure_every == 0:
            breaker.record_failure(start + i * spacing)
        else:
            breaker.record_success(start + i * spacing)
    return breaker


def test_it_starts_closed_and_lets_calls_through():
    breaker = CircuitBreaker()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.allow(NOW)
    assert breaker.failures == 0
    assert breaker.opened_at is None


def test_it_stays_closed_below_the_minimum_number_of_calls_however_they_end():
    breaker = failing(19)
    assert breaker.state == "closed"
    assert breaker.failures == 19
    assert breaker.allow(NOW)


def test_it_opens_once_half_the_calls_in_the_window_failed_and_enough_were_seen():
    breaker = failing(20)
    assert breaker.state == BreakerState.OPEN
    assert breaker.opened_at == NOW


def test_a_run_of_fast_failures_at_a_twenty_percent_rate_does_not_open_it():
    # An overloaded model answers 529 at once: six failures in a row among 100 calls.
    breaker = mixed(94, failure_every=5)
    for i in range(6):
        breaker.record_failure(NOW + 10 + i * 0.001)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.failures == 18 + 6


def test_it_opens_at_a_sustained_failure_rate_of_one_half():
    breaker = mixed(40, failure_every=2)
    assert breaker.state == BreakerState.OPEN


def test_it_forgets_calls_older_than_the_window():
    breaker = failing(15)
    later = NOW + BreakerParams().window_s + 1
    for i in range(10):
        breaker.record_failure(later + i * 0.01)
    assert breaker.state == BreakerState.CLOSED
    assert (breaker.calls, breaker.failures) == (10, 10)


def test_it_rejects_calls_during_the_cooldown():
    breaker = opened()
    assert not breaker.allow(NOW)
    assert not breaker.allow(NOW + COOLDOWN - 0.1)
    assert breaker.state == BreakerState.OPEN


def test_it_half_opens_after_the_cooldown_and_lets_one_probe_through():
    breaker = opened()
    assert breaker.allow(NOW + COOLDOWN)
    assert breaker.state == BreakerState.HALF_OPEN
    assert not breaker.allow(NOW + COOLDOWN + 1)


def test_it_lets_as_many_probes_through_as_configured():
    breaker = opened(half_open_max_probes=3)
    later = NOW + COOLDOWN
    assert [breaker.allow(later) for _ in range(4)] == [True, True, True, False]


def test_it_closes_when_the_probe_succeeds():
    breaker = opened()
    breaker.allow(NOW + COOLDOWN)
    breaker.record_success(NOW + COOLDOWN + 2)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.failures == 0
    assert breaker.opened_at is None
    assert breaker.allow(NOW + COOLDOWN + 2)


def test_it_reopens_for_a_fresh_cooldown_when_the_probe_fails():
    breaker = opened()
    probe_failed_at = NOW + COOLDOWN + 2
    breaker.allow(NOW + COOLDOWN)
    breaker.record_failure(probe_failed_at)
    assert breaker.state == BreakerState.OPEN
    assert breaker.opened_at == probe_failed_at
    assert not breaker.allow(probe_failed_at + COOLDOWN - 0.1)
    assert breaker.allow(probe_failed_at + COOLDOWN)


def test_it_sends_another_probe_when_the_first_never_reports_back():
    breaker = opened()
    assert breaker.allow(NOW + COOLDOWN)
    assert not breaker.allow(NOW + 2 * COOLDOWN - 0.1)
    assert breaker.allow(NOW + 2 * COOLDOWN)


def test_it_ignores_a_late_success_while_open():
    breaker = opened()
    breaker.record_success(NOW + 1)
    assert breaker.state == BreakerState.OPEN


def test_it_does_not_extend_the_cooldown_for_late_failures_while_open():
    breaker = opened()
    breaker.record_failure(NOW + 10)
    assert breaker.opened_at == NOW
    assert breaker.allow(NOW + COOLDOWN)


def test_it_does_not_count_a_429_as_a_failure():
    assert not counts_as_failure("rate_limited")
    assert not counts_as_failure("ok")


@pytest.mark.parametrize("outcome", ["overloaded", "error", "timeout"])
def test_it_counts_overloads_errors_and_timeouts_as_failures(outcome):
    assert counts_as_failure(outcome)


def test_it_rejects_an_unknown_outcome():
    with pytest.raises(ValueError, match="unknown outcome"):
        counts_as_failure("overload")


@pytest.mark.parametrize(
    "breaker",
    [CircuitBreaker(), failing(3), opened(), failing(26)],
    ids=["closed", "closed-with-failures", "open", "open-with-late-failure"],
)
def test_it_round_trips_through_a_json_safe_dict(breaker):
    stored = json.loads(json.dumps(breaker.to_dict()))
    restored = CircuitBreaker.from_dict(stored)
    assert restored.to_dict() == breaker.to_dict()
    assert (restored.state, restored.failures, restored.opened_at) == (
        breaker.state,
        breaker.failures,
        breaker.opened_at,
    )


def test_it_shares_a_probe_already_taken_by_another_process():
    one = opened()
    one.allow(NOW + COOLDOWN)
    other = CircuitBreaker.from_dict(one.to_dict())
    assert other.state == BreakerState.HALF_OPEN
    assert not other.allow(NOW + COOLDOWN + 1)
    other.record_success(NOW + COOLDOWN + 2)
    assert CircuitBreaker.from_dict(other.to_dict()).state == BreakerState.CLOSED


def test_it_takes_its_parameters_from_code_not_from_storage():
    stored = failing(2).to_dict()
    restored = CircuitBreaker.from_dict(stored, BreakerParams(min_calls=3))
    restored.record_failure(NOW)
    assert restored.state == BreakerState.OPEN


def test_it_starts_closed_from_an_empty_row():
    assert CircuitBreaker.from_dict({}).state == BreakerState.CLOSED


@pytest.mark.parametrize(
    "params",
    [
        {"min_calls": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"window_s": 0},
        {"half_open_max_probes": 0},
        {"cooldown_s": -1},
    ],
)
def test_it_rejects_parameters_that_cannot_work(params):
    with pytest.raises(ValueError):
        BreakerParams(**params)
