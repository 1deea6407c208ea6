"""What a model's limits allow, found by replaying the provider's buckets: the ceiling the
benches measure against and the advisor's "what a tighter max_tokens would allow"."""

import math

import pytest

from allocation.capacity import CallProfile, calls_per_minute
from allocation.limiter.buckets import Limits

UNLIMITED = 0


def limits(rpm=UNLIMITED, itpm=UNLIMITED, otpm=UNLIMITED, concurrency=UNLIMITED):
    return Limits(rpm, itpm, otpm, concurrency)


SHORT_CALL = CallProfile(input_tokens=2_000, max_tokens=1_024, output_tokens=250, latency_s=1.5)


def test_the_request_limit_alone_allows_exactly_its_rate():
    allowed = calls_per_minute(limits(rpm=600), [SHORT_CALL])
    assert allowed.calls_per_minute == pytest.approx(600, rel=0.001)
    assert allowed.binding == "rpm"


def test_input_tokens_bind_at_the_limit_over_each_calls_input():
    allowed = calls_per_minute(limits(rpm=600, itpm=30_000), [SHORT_CALL])
    assert allowed.calls_per_minute == pytest.approx(30_000 / 2_000, rel=0.01)
    assert allowed.binding == "itpm"


def test_with_refunds_output_tokens_bind_at_what_the_answers_really_use():
    # 8,000 a minute against answers of 250: 32 a minute, though each call holds 1,024.
    allowed = calls_per_minute(limits(otpm=8_000), [SHORT_CALL])
    assert allowed.calls_per_minute == pytest.approx(8_000 / 250, rel=0.02)
    assert allowed.binding == "otpm"


def test_a_max_tokens_above_the_bucket_holds_long_calls_back_whatever_their_answers():
    # The bucket holds 133 tokens; each call takes 1,024 for the 10 s it runs and writes 90.
    long_call = CallProfile(input_tokens=100, max_tokens=1_024, output_tokens=90, latency_s=10)
    held_back = calls_per_minute(limits(otpm=8_000), [long_call])
    answers_allow = 8_000 / 90
    assert held_back.calls_per_minute < answers_allow / 4
    assert held_back.binding == "otpm"

    tight = CallProfile(input_tokens=100, max_tokens=100, output_tokens=90, latency_s=10)
    assert calls_per_minute(limits(otpm=8_000), [tight]).calls_per_minute == pytest.approx(
        answers_allow, rel=0.02
    )


def test_concurrency_binds_at_the_calls_in_flight_over_their_latency():
    allowed = calls_per_minute(limits(rpm=6_000, concurrency=5), [SHORT_CALL])
    assert allowed.calls_per_minute == pytest.approx(5 * 60 / 1.5, rel=0.01)
    assert allowed.binding == "concurrency"


def test_a_mix_of_calls_is_taken_in_turn():
    big = CallProfile(input_tokens=4_000, max_tokens=1_024, output_tokens=250, latency_s=1.5)
    allowed = calls_per_minute(limits(itpm=30_000), [SHORT_CALL, big])
    assert allowed.calls_per_minute == pytest.approx(30_000 / 3_000, rel=0.02)


def test_nothing_limits_an_unlimited_provider():
    allowed = calls_per_minute(limits(), [SHORT_CALL])
    assert math.isinf(allowed.calls_per_minute)
    assert allowed.binding == ""
