"""30 creations fired at once against 10 a minute: exactly 10 readings, whichever way they
come in (the API or the reading page), because each takes its place atomically."""

import threading

import pytest
from django.db import connection
from django.test import Client

from budgets import rate_buckets
from readings.models import Reading
from tests.readings.api.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def ten_a_minute(monkeypatch):
    from budgets.throttles import ReadingCreateThrottle

    monkeypatch.setitem(ReadingCreateThrottle.THROTTLE_RATES, "reading_create", "10/min")
    rate_buckets.forget_all()
    yield
    rate_buckets.forget_all()


def fire_at_once(count, send) -> list[int]:
    start, statuses = threading.Barrier(count), []

    def one():
        start.wait()
        try:
            statuses.append(send())
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_thirty_api_creations_at_once_make_exactly_ten_readings(bob):
    def create():
        body = {"spread": "three_card", "question": "At once?"}
        return client_for(bob).post("/api/readings/", body, format="json").status_code

    statuses = fire_at_once(30, create)
    assert statuses.count(202) == 10 and statuses.count(429) == 20
    assert Reading.objects.filter(owner=bob).count() == 10


def test_thirty_page_creations_at_once_make_exactly_ten_readings(bob):
    def ask():
        page = Client()
        page.force_login(bob)
        body = {"spread": "three_card", "question": "At once?", "language": "en"}
        return page.post("/", body).status_code

    statuses = fire_at_once(30, ask)
    assert statuses.count(302) == 10 and statuses.count(429) == 20
    assert Reading.objects.filter(owner=bob).count() == 10
