"""Throttle buckets: N per period means N at once, then one every period / N, counted
atomically however many requests race for the last place (Postgres, or Redis when set)."""

import threading

import pytest
from django.db import connection

from budgets import rate_buckets
from tests.allocation.limiter.conftest import REDIS_URL, redis_client

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(params=["postgres", "redis"])
def store(request, settings):
    if request.param == "redis":
        redis_client()  # fails with how to start Redis if it is not answering
        settings.THROTTLE_REDIS_URL = REDIS_URL
    else:
        settings.THROTTLE_REDIS_URL = ""
    rate_buckets.forget_all()
    yield request.param
    rate_buckets.forget_all()


def test_a_full_bucket_lets_its_whole_rate_through_at_once_then_says_when(store):
    waits = [rate_buckets.take("bob", limit=3, period_s=60) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    # The next place opens one interval (60 s / 3) after the first request.
    assert 19 < waits[3] <= 20


def test_clients_have_buckets_of_their_own(store):
    for _ in range(2):
        rate_buckets.take("bob", limit=2, period_s=60)
    assert rate_buckets.take("bob", limit=2, period_s=60) > 0
    assert rate_buckets.take("charlie", limit=2, period_s=60) == 0.0


def test_the_bucket_refills_at_the_rate(store):
    for _ in range(5):
        assert rate_buckets.take("fast", limit=5, period_s=0.5) == 0.0
    assert rate_buckets.take("fast", limit=5, period_s=0.5) > 0
    threading.Event().wait(0.15)  # one interval (0.1 s) and a margin
    assert rate_buckets.take("fast", limit=5, period_s=0.5) == 0.0


def test_thirty_racing_requests_against_ten_a_minute_get_exactly_ten_places(store):
    start, answers = threading.Barrier(30), []

    def request():
        start.wait()
        try:
            answers.append(rate_buckets.take("racer", limit=10, period_s=60))
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 30
    assert sum(1 for wait in answers if wait == 0.0) == 10
