import pytest

from allocation.limiter.buckets import Buckets, Decision, Limits, admit, capacity, refill, settle

NOW = 1_000.0
# 1 request, 100 input tokens and 20 output tokens per second; with BURST_S = 3 the buckets
# hold 3 requests, 300 input tokens and 60 output tokens.
LIMITS = Limits(
    requests_per_minute=60,
    input_tokens_per_minute=6_000,
    output_tokens_per_minute=1_200,
    max_concurrent_calls=10,
)
BURST_S = 3.0


def full(limits: Limits = LIMITS, now: float = NOW) -> Buckets:
    return Buckets.full(limits, BURST_S, now)


def ask(
    buckets: Buckets,
    *,
    now: float = NOW,
    limits: Limits = LIMITS,
    in_flight: int = 0,
    concurrency_limit: int = 10,
    input_estimate: int = 0,
    paused_until: float = 0.0,
    burst_s: float = BURST_S,
    reserve_within_s: float = 0.0,
    output_reserve: int = 0,
) -> Decision:
    return admit(
        buckets,
        limits,
        in_flight=in_flight,
        concurrency_limit=concurrency_limit,
        input_estimate=input_estimate,
        paused_until=paused_until,
        burst_s=burst_s,
        now=now,
        reserve_within_s=reserve_within_s,
        output_reserve=output_reserve,
    )


def levels(buckets: Buckets) -> tuple[float, float, float]:
    return (buckets.requests, buckets.input_tokens, buckets.output_tokens)


# --- Capacity ---------------------------------------------------------------------------


def test_it_starts_full_with_burst_s_seconds_of_refill():
    buckets = full()
    assert levels(buckets) == (3.0, 300.0, 60.0)
    assert buckets.refilled_at == NOW


def test_it_sizes_a_bucket_to_burst_s_seconds_of_the_per_minute_rate():
    assert capacity(6_000, 3.0) == pytest.approx(300.0)
    assert capacity(30_000, 0.9) == pytest.approx(450.0)


def test_it_gives_every_bucket_a_capacity_of_at_least_one():
    assert capacity(50, 0.9) == 1.0  # 0.75 requests of refill
    assert capacity(1, 0.9) == 1.0  # 0.015 requests of refill


def test_it_still_admits_one_call_under_a_one_request_per_minute_limit():
    slow = Limits(
        requests_per_minute=1,
        input_tokens_per_minute=6_000,
        output_tokens_per_minute=1_200,
        max_concurrent_calls=10,
    )
    buckets = Buckets.full(slow, 0.9, NOW)
    assert buckets.requests == 1.0

    assert ask(buckets, limits=slow, burst_s=0.9) == Decision(True)
    refused = ask(buckets, limits=slow, burst_s=0.9)
    assert refused.reason == "rpm"
    assert refused.wait_s == pytest.approx(60.0)


# --- Requests per minute ----------------------------------------------------------------


def test_it_admits_up_to_the_request_capacity_then_refuses_with_rpm():
    buckets = full()
    for _ in range(3):
        assert ask(buckets) == Decision(True)

    refused = ask(buckets)
    assert not refused.admitted
    assert refused.reason == "rpm"
    assert refused.wait_s == pytest.approx(1.0)  # the time to refill one request


def test_it_waits_only_for_the_missing_fraction_of_a_request():
    buckets = full()
    for _ in range(3):
        ask(buckets)

    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 0.25)
    refused = ask(buckets, now=NOW + 0.25)
    assert refused.reason == "rpm"
    assert refused.wait_s == pytest.approx(0.75)


def test_it_admits_again_once_one_request_has_refilled():
    buckets = full()
    for _ in range(3):
        ask(buckets)

    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 1.0)
    assert ask(buckets, now=NOW + 1.0) == Decision(True)
    assert ask(buckets, now=NOW + 1.0).reason == "rpm"


# --- Refill -----------------------------------------------------------------------------


def test_it_refills_continuously_in_proportion_to_elapsed_time():
    buckets = Buckets(requests=0.0, input_tokens=0.0, output_tokens=0.0, refilled_at=NOW)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 0.5)
    assert levels(buckets) == pytest.approx((0.5, 50.0, 10.0))
    assert buckets.refilled_at == NOW + 0.5


def test_it_never_refills_beyond_capacity():
    buckets = Buckets(requests=2.5, input_tokens=250.0, output_tokens=50.0, refilled_at=NOW)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 3_600.0)
    assert levels(buckets) == (3.0, 300.0, 60.0)


def test_it_refills_a_debt_at_the_same_rate():
    buckets = Buckets(requests=3.0, input_tokens=-200.0, output_tokens=-100.0, refilled_at=NOW)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 2.0)
    assert levels(buckets) == pytest.approx((3.0, 0.0, -60.0))


def test_it_adds_nothing_when_the_clock_reads_earlier_than_the_last_refill():
    buckets = Buckets(requests=1.0, input_tokens=100.0, output_tokens=10.0, refilled_at=NOW)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW - 5.0)
    assert levels(buckets) == (1.0, 100.0, 10.0)


def test_it_does_not_count_the_same_seconds_twice_when_clocks_disagree():
    buckets = Buckets(requests=0.0, input_tokens=0.0, output_tokens=0.0, refilled_at=NOW)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 1.0)  # worker A
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 0.5)  # worker B, clock 0.5 s behind
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 1.0)  # worker A, no time has passed
    assert buckets.requests == pytest.approx(1.0)


# --- Concurrency and pauses -------------------------------------------------------------


def test_it_refuses_when_in_flight_reaches_the_adaptive_concurrency_limit():
    assert ask(full(), in_flight=3, concurrency_limit=4) == Decision(True)
    assert ask(full(), in_flight=4, concurrency_limit=4) == Decision(False, 0.0, "concurrency")


def test_it_refuses_when_in_flight_reaches_the_configured_maximum_whatever_the_adaptive_limit():
    assert ask(full(), in_flight=9, concurrency_limit=20) == Decision(True)
    assert ask(full(), in_flight=10, concurrency_limit=20) == Decision(False, 0.0, "concurrency")


def test_it_refuses_during_a_pause_with_the_remaining_pause_as_the_wait():
    refused = ask(full(), now=NOW + 2.0, paused_until=NOW + 5.0)
    assert not refused.admitted
    assert refused.reason == "paused"
    assert refused.wait_s == pytest.approx(3.0)


def test_it_admits_once_the_pause_has_ended():
    assert ask(full(), now=NOW + 5.0, paused_until=NOW + 5.0) == Decision(True)


def test_it_reports_a_pause_before_a_full_concurrency():
    refused = ask(full(), in_flight=10, paused_until=NOW + 1.0)
    assert refused.reason == "paused"


def test_it_reports_concurrency_before_empty_buckets():
    empty = Buckets(requests=0.0, input_tokens=0.0, output_tokens=-10.0, refilled_at=NOW)
    assert ask(empty, in_flight=10, input_estimate=100).reason == "concurrency"


def test_it_charges_nothing_for_a_refused_call():
    buckets = full()
    ask(buckets, in_flight=10, input_estimate=100)
    ask(buckets, paused_until=NOW + 1.0, input_estimate=100)
    assert levels(buckets) == (3.0, 300.0, 60.0)


# --- Input tokens -----------------------------------------------------------------------


def test_it_charges_exactly_one_request_and_the_input_estimate_on_admission():
    buckets = full()
    assert ask(buckets, input_estimate=120) == Decision(True)
    assert levels(buckets) == (2.0, 180.0, 60.0)


def test_it_refuses_an_estimate_a_partially_filled_bucket_cannot_cover():
    buckets = Buckets(requests=3.0, input_tokens=100.0, output_tokens=60.0, refilled_at=NOW)
    refused = ask(buckets, input_estimate=250)
    assert not refused.admitted
    assert refused.reason == "itpm"
    assert refused.wait_s == pytest.approx(1.5)  # 150 tokens missing at 100 a second
    assert levels(buckets) == (3.0, 100.0, 60.0)


def test_it_admits_an_estimate_larger_than_the_bucket_once_full_and_leaves_a_debt():
    buckets = full()
    assert ask(buckets, input_estimate=500) == Decision(True)
    assert buckets.input_tokens == -200.0


def test_it_makes_an_estimate_larger_than_the_bucket_wait_only_for_a_full_bucket():
    buckets = Buckets(requests=3.0, input_tokens=250.0, output_tokens=60.0, refilled_at=NOW)
    refused = ask(buckets, input_estimate=500)
    assert refused.reason == "itpm"
    assert refused.wait_s == pytest.approx(0.5)  # to 300, not to 500


def test_it_refuses_input_while_paying_off_an_oversized_prompt():
    buckets = full()
    ask(buckets, input_estimate=500)

    refused = ask(buckets, input_estimate=100)
    assert refused.reason == "itpm"
    assert refused.wait_s == pytest.approx(3.0)  # from -200 up to 100

    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 3.0)
    assert ask(buckets, now=NOW + 3.0, input_estimate=100) == Decision(True)


# --- Output tokens ----------------------------------------------------------------------


def test_a_call_of_unknown_max_tokens_is_charged_its_output_when_settled():
    buckets = full()
    ask(buckets, input_estimate=100)
    assert buckets.output_tokens == 60.0

    settle(buckets, input_estimate=100, input_used=100, output_used=45)
    assert buckets.output_tokens == 15.0


def test_max_tokens_are_held_on_admission_and_the_unused_part_given_back_on_settling():
    buckets = full()
    assert ask(buckets, output_reserve=40) == Decision(True)
    assert buckets.output_tokens == 20.0  # 60 less the 40 reserved

    settle(buckets, input_estimate=0, input_used=0, output_used=15, output_reserved=40)
    assert buckets.output_tokens == 45.0  # the 25 it did not write came back


def test_a_max_tokens_the_bucket_cannot_hold_waits_for_a_full_bucket_then_leaves_a_debt():
    buckets = full()
    ask(buckets, output_reserve=40)  # 20 left

    refused = ask(buckets, output_reserve=100)
    assert refused.reason == "otpm"
    assert refused.wait_s == pytest.approx(2.0)  # from 20 up to the full 60, at 20 a second

    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 2.0)
    assert ask(buckets, now=NOW + 2.0, output_reserve=100) == Decision(True)
    assert buckets.output_tokens == -40.0


def test_it_refuses_with_otpm_while_the_output_bucket_is_in_debt():
    buckets = full()
    ask(buckets)
    settle(buckets, input_estimate=0, input_used=0, output_used=100)
    assert buckets.output_tokens == -40.0

    refused = ask(buckets)
    assert not refused.admitted
    assert refused.reason == "otpm"
    assert refused.wait_s == pytest.approx(2.05)  # from -40 up to 1 at 20 a second


def test_it_refuses_with_otpm_when_the_output_bucket_is_exactly_empty():
    buckets = Buckets(requests=3.0, input_tokens=300.0, output_tokens=0.0, refilled_at=NOW)
    refused = ask(buckets)
    assert refused.reason == "otpm"
    assert refused.wait_s == pytest.approx(0.05)


def test_it_admits_again_once_the_output_debt_has_refilled():
    buckets = full()
    ask(buckets)
    settle(buckets, input_estimate=0, input_used=0, output_used=100)

    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 1.9)
    assert ask(buckets, now=NOW + 1.9).reason == "otpm"  # still -2
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 2.1)
    assert ask(buckets, now=NOW + 2.1) == Decision(True)  # +2


# --- Settling ---------------------------------------------------------------------------


def test_it_refunds_an_over_estimated_input_on_settlement():
    buckets = full()
    ask(buckets, input_estimate=200)
    settle(buckets, input_estimate=200, input_used=150, output_used=0)
    assert buckets.input_tokens == 150.0


def test_it_charges_extra_for_an_under_estimated_input_on_settlement():
    buckets = full()
    ask(buckets, input_estimate=100)
    settle(buckets, input_estimate=100, input_used=180, output_used=0)
    assert buckets.input_tokens == 120.0


def test_it_ends_up_charging_the_real_input_and_output_of_a_call():
    buckets = full()
    ask(buckets, input_estimate=250)
    settle(buckets, input_estimate=250, input_used=90, output_used=30)
    assert levels(buckets) == (2.0, 210.0, 30.0)


def test_it_never_keeps_a_refund_above_capacity_after_the_next_refill():
    buckets = full()
    ask(buckets, input_estimate=300)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 3.0)
    settle(buckets, input_estimate=300, input_used=100, output_used=0)
    refill(buckets, LIMITS, burst_s=BURST_S, now=NOW + 3.0)
    assert buckets.input_tokens == 300.0


def test_a_request_token_due_soon_is_reserved_and_the_call_waits_for_it():
    per_second = LIMITS.requests_per_minute / 60
    buckets = Buckets(requests=0.5, input_tokens=1e9, output_tokens=1e9, refilled_at=NOW)

    decision = ask(buckets, reserve_within_s=1.0)

    assert decision.admitted and decision.reason == "reserved"
    assert decision.wait_s == pytest.approx(0.5 / per_second)
    assert buckets.requests == pytest.approx(-0.5)  # the token is taken: the next asker waits


def test_a_token_further_away_than_the_reservation_window_is_refused_with_the_rest_to_wait():
    per_second = LIMITS.requests_per_minute / 60
    buckets = Buckets(requests=-2.0, input_tokens=1e9, output_tokens=1e9, refilled_at=NOW)

    decision = ask(buckets, reserve_within_s=0.1)

    assert not decision.admitted and decision.reason == "rpm"
    assert decision.wait_s == pytest.approx(3.0 / per_second - 0.1)


def test_an_admission_says_when_the_next_call_could_be_admitted():
    per_second = LIMITS.requests_per_minute / 60
    buckets = Buckets(requests=1.0, input_tokens=1e9, output_tokens=1e9, refilled_at=NOW)

    decision = ask(buckets)

    assert decision.admitted and decision.wait_s == 0
    assert decision.next_in_s == pytest.approx(1.0 / per_second)
