import pytest

from allocation.adaptive_limit import AimdLimit, AimdParams

NOW = 1_000.0
RTT = 2.0


def limiter(**params) -> AimdLimit:
    return AimdLimit(AimdParams(**params))


def succeed(lim: AimdLimit, times: int, *, now=NOW, in_flight=None, rtt=RTT) -> None:
    """Report successes; by default with the whole limit in flight, so growth is allowed."""
    for _ in range(times):
        busy = lim.limit if in_flight is None else in_flight
        lim.on_sample(now=now, rtt_s=rtt, in_flight=busy, outcome="ok")


def fail(lim: AimdLimit, outcome: str, *, now=NOW) -> None:
    lim.on_sample(now=now, rtt_s=RTT, in_flight=lim.limit, outcome=outcome)


def test_it_starts_at_the_initial_limit():
    assert AimdLimit().limit == AimdParams().initial_limit == 20
    assert AimdLimit().snapshot()["last_reason"] == "initial"


def test_it_grows_by_one_after_a_window_of_successes_as_large_as_the_limit():
    lim = limiter(initial_limit=5)
    succeed(lim, 4)
    assert lim.limit == 5
    succeed(lim, 1)
    assert lim.limit == 6
    succeed(lim, 5)
    assert lim.limit == 6
    succeed(lim, 1)
    assert lim.limit == 7
    assert lim.snapshot()["last_reason"] == "increase"


def test_it_does_not_grow_while_less_than_half_the_limit_is_in_flight():
    lim = limiter(initial_limit=10)
    succeed(lim, 200, in_flight=4)
    assert lim.limit == 10


def test_it_grows_from_half_the_limit_in_flight():
    lim = limiter(initial_limit=10)
    succeed(lim, 10, in_flight=5)
    assert lim.limit == 11


def test_it_halves_the_limit_on_a_429():
    lim = limiter(initial_limit=20)
    fail(lim, "rate_limited")
    assert lim.limit == 10
    assert lim.snapshot()["last_reason"] == "rate_limited"


@pytest.mark.parametrize("outcome", ["overloaded", "timeout"])
def test_it_cuts_ten_percent_on_an_overload_or_a_timeout(outcome):
    lim = limiter(initial_limit=20)
    fail(lim, outcome)
    assert lim.limit == 18
    assert lim.snapshot()["last_reason"] == outcome


def test_it_cuts_ten_percent_once_the_smoothed_rtt_passes_twice_the_baseline():
    lim = limiter(initial_limit=20, max_limit=20)
    succeed(lim, 50, rtt=1.0)
    succeed(lim, 10, rtt=3.0)
    assert lim.limit == 20, "a short slowdown is still within tolerance"
    succeed(lim, 10, rtt=3.0)
    assert lim.limit == 18
    snap = lim.snapshot()
    assert snap["last_reason"] == "latency"
    assert snap["smoothed_rtt"] > 2 * snap["baseline_rtt"]


def test_it_takes_ordinary_latency_noise_in_its_stride():
    lim = limiter(initial_limit=5, max_limit=10)
    for i in range(200):
        succeed(lim, 1, now=NOW + i, rtt=1.0 if i % 2 else 3.0)
    assert lim.limit == 10


def test_it_cuts_only_once_for_a_burst_of_429s_within_the_cooldown():
    lim = limiter(initial_limit=40)
    for i in range(10):
        fail(lim, "rate_limited", now=NOW + i * 0.09)
    assert lim.limit == 20


def test_it_cuts_again_for_a_429_after_the_cooldown():
    lim = limiter(initial_limit=40)
    fail(lim, "rate_limited", now=NOW)
    fail(lim, "rate_limited", now=NOW + 0.99)
    fail(lim, "rate_limited", now=NOW + 1.0)
    assert lim.limit == 10


def test_it_shares_one_cooldown_between_all_kinds_of_drop():
    lim = limiter(initial_limit=20)
    fail(lim, "overloaded", now=NOW)
    fail(lim, "rate_limited", now=NOW + 0.5)
    assert lim.limit == 18


def test_it_never_goes_below_the_minimum():
    lim = limiter(initial_limit=5, min_limit=2)
    for i in range(10):
        fail(lim, "rate_limited", now=NOW + 2 * i)
    assert lim.limit == 2


def test_it_never_goes_below_one_by_default():
    lim = limiter(initial_limit=1)
    fail(lim, "overloaded")
    assert lim.limit == 1


def test_it_never_grows_past_the_maximum():
    lim = limiter(initial_limit=5, max_limit=8)
    succeed(lim, 500)
    assert lim.limit == 8


def test_it_restarts_the_growth_window_after_a_cut():
    lim = limiter(initial_limit=6)
    succeed(lim, 5)
    fail(lim, "rate_limited")
    assert lim.limit == 3
    succeed(lim, 2)
    assert lim.limit == 3
    succeed(lim, 1)
    assert lim.limit == 4


def test_it_neither_cuts_nor_learns_rtt_from_generic_errors():
    lim = limiter(initial_limit=10)
    for i in range(20):
        lim.on_sample(now=NOW + 2 * i, rtt_s=0.01, in_flight=10, outcome="error")
    assert lim.limit == 10
    assert lim.snapshot()["smoothed_rtt"] is None


def test_it_does_not_learn_rtt_from_timeouts():
    lim = limiter()
    lim.on_sample(now=NOW, rtt_s=600.0, in_flight=5, outcome="timeout")
    assert lim.snapshot()["baseline_rtt"] is None


def test_it_holds_growth_while_remaining_requests_are_under_ten_percent():
    lim = limiter(initial_limit=5)
    lim.on_headers(now=NOW, requests_remaining=9, requests_limit=100, retry_after_s=None)
    succeed(lim, 50)
    assert lim.limit == 5
    assert lim.snapshot()["headroom_low"] is True

    lim.on_headers(now=NOW, requests_remaining=10, requests_limit=100, retry_after_s=None)
    succeed(lim, 5)
    assert lim.limit == 6


def test_it_holds_growth_while_output_tokens_run_low():
    lim = limiter(initial_limit=5)
    lim.on_headers(
        now=NOW,
        requests_remaining=900,
        requests_limit=1000,
        retry_after_s=None,
        tokens_remaining=1_000,
        tokens_limit=80_000,
    )
    succeed(lim, 50)
    assert lim.limit == 5


def test_it_keeps_its_headroom_verdict_when_headers_say_nothing():
    lim = limiter(initial_limit=5)
    lim.on_headers(now=NOW, requests_remaining=1, requests_limit=100, retry_after_s=None)
    lim.on_headers(now=NOW, requests_remaining=None, requests_limit=None, retry_after_s=None)
    succeed(lim, 50)
    assert lim.limit == 5


def test_it_still_cuts_while_growth_is_held():
    lim = limiter(initial_limit=10)
    lim.on_headers(now=NOW, requests_remaining=0, requests_limit=100, retry_after_s=None)
    fail(lim, "rate_limited")
    assert lim.limit == 5


def test_it_pauses_until_the_retry_after_has_passed():
    lim = limiter()
    assert lim.paused_until == 0.0
    lim.on_headers(now=NOW, requests_remaining=None, requests_limit=None, retry_after_s=3.0)
    assert lim.paused_until == NOW + 3.0
    assert lim.is_paused(NOW + 2.9)
    assert not lim.is_paused(NOW + 3.0)


def test_it_does_not_let_a_shorter_retry_after_end_a_pause_early():
    lim = limiter()
    lim.on_headers(now=NOW, requests_remaining=None, requests_limit=None, retry_after_s=10.0)
    lim.on_headers(now=NOW + 1, requests_remaining=None, requests_limit=None, retry_after_s=1.0)
    assert lim.paused_until == NOW + 10.0


def test_it_snapshots_what_an_operator_needs_to_see():
    lim = limiter(initial_limit=8)
    succeed(lim, 1, rtt=1.5)
    fail(lim, "rate_limited")
    assert lim.snapshot() == {
        "limit": 4,
        "baseline_rtt": 1.5,
        "smoothed_rtt": 1.5,
        "last_reason": "rate_limited",
        "headroom_low": False,
        "paused_until": 0.0,
    }


def test_it_rejects_an_unknown_outcome():
    with pytest.raises(ValueError, match="unknown outcome"):
        AimdLimit().on_sample(now=NOW, rtt_s=RTT, in_flight=1, outcome="okay")


@pytest.mark.parametrize(
    "params",
    [
        {"min_limit": 0},
        {"initial_limit": 201},
        {"min_limit": 21},
        {"backoff_ratio": 1.0},
        {"rate_limit_backoff_ratio": 0.0},
    ],
)
def test_it_rejects_parameters_that_cannot_work(params):
    with pytest.raises(ValueError):
        AimdParams(**params)


def test_it_round_trips_its_state_through_a_dict_so_processes_can_share_it():
    limit = AimdLimit()
    for i in range(20):
        limit.on_sample(now=float(i), rtt_s=1.0, in_flight=limit.limit, outcome="ok")
    limit.on_sample(now=30.0, rtt_s=1.0, in_flight=5, outcome="rate_limited")

    copy = AimdLimit.from_dict(limit.to_dict())

    assert copy.to_dict() == limit.to_dict()
    copy.on_sample(now=30.5, rtt_s=1.0, in_flight=5, outcome="rate_limited")
    assert copy.limit == limit.limit, "the cooldown survived the round trip"


def test_it_starts_fresh_from_an_empty_dict():
    assert AimdLimit.from_dict({}).limit == AimdParams().initial_limit
