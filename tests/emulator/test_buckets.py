"""The token bucket, on a clock the test moves by hand."""

import pytest

from emulator.buckets import TokenBucket


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_new_bucket_holds_burst_seconds_of_refill():
    bucket = TokenBucket(per_minute=600, burst_s=2, clock=Clock())  # 10 per second
    assert bucket.capacity == 20
    assert bucket.remaining() == 20
    assert bucket.wait_s(20) == 0


def test_it_refills_continuously_up_to_capacity():
    clock = Clock()
    bucket = TokenBucket(per_minute=600, burst_s=1, clock=clock)
    bucket.take(10)
    assert bucket.remaining() == 0
    clock.now += 0.35
    assert bucket.level() == pytest.approx(3.5)
    clock.now += 100
    assert bucket.level() == 10


def test_wait_is_the_time_until_the_cost_fits():
    clock = Clock()
    bucket = TokenBucket(per_minute=60, burst_s=3, clock=clock)  # 1 per second, capacity 3
    bucket.take(3)
    assert bucket.wait_s(1) == pytest.approx(1.0)
    assert bucket.wait_s(2) == pytest.approx(2.0)
    clock.now += 1.0
    assert bucket.wait_s(1) == 0


def test_a_cost_above_capacity_waits_for_a_full_bucket_then_leaves_a_debt():
    clock = Clock()
    bucket = TokenBucket(per_minute=600, burst_s=1, clock=clock)  # capacity 10
    assert bucket.wait_s(50) == 0  # full bucket: admitted although 50 > 10
    bucket.take(50)
    assert bucket.level() == -40
    # The next small request waits for the debt to refill: 41 tokens at 10 per second.
    assert bucket.wait_s(1) == pytest.approx(4.1)
    clock.now += 5
    assert bucket.wait_s(50) == pytest.approx(0.0)


def test_capacity_is_at_least_one_so_a_slow_limit_still_admits_requests():
    bucket = TokenBucket(per_minute=6, burst_s=1, clock=Clock())  # 0.1 per second
    assert bucket.capacity == 1
    assert bucket.wait_s(1) == 0


def test_a_client_waiting_exactly_as_told_is_admitted():
    clock = Clock()
    bucket = TokenBucket(per_minute=7, burst_s=1, clock=clock)
    bucket.take(1)
    clock.now += bucket.wait_s(1)
    assert bucket.wait_s(1) == 0


def test_full_in_s_tells_when_the_bucket_is_full_again():
    clock = Clock()
    bucket = TokenBucket(per_minute=120, burst_s=1, clock=clock)  # 2 per second, capacity 2
    assert bucket.full_in_s() == 0
    bucket.take(2)
    assert bucket.full_in_s() == pytest.approx(1.0)


def test_it_refuses_a_non_positive_rate():
    with pytest.raises(ValueError):
        TokenBucket(per_minute=0)
