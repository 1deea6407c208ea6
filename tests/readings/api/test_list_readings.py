"""GET /api/readings/: my readings, newest first, a page at a time."""

from decimal import Decimal

import pytest

from readings.models import Reading, ReadingStatus
from readings.services import reading_create

pytestmark = pytest.mark.django_db


def make_reading(owner, question="Will it rain?", spread="three_card"):
    return reading_create(owner=owner, spread=spread, question=question)


def test_it_lists_my_readings_newest_first(as_bob, bob):
    first = make_reading(bob, "First?")
    second = make_reading(bob, "Second?")

    response = as_bob.get("/api/readings/")

    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(second.pk), str(first.pk)]


def test_it_shows_each_reading_in_brief(as_bob, bob):
    reading = make_reading(bob, "Will it rain?", spread="celtic_cross")
    Reading.objects.filter(pk=reading.pk).update(cost_usd=Decimal("0.5"))

    item = as_bob.get("/api/readings/").json()["results"][0]

    assert set(item) == {
        "id",
        "spread",
        "question",
        "mode",
        "language",
        "status",
        "created_at",
        "cost_usd",
        "url",
    }
    assert item["spread"] == {"slug": "celtic_cross", "name": "Celtic Cross"}
    assert item["question"] == "Will it rain?"
    assert item["status"] == "queued"
    assert item["cost_usd"] == "0.500000"
    assert item["url"] == f"http://testserver/api/readings/{reading.pk}/"


def test_it_leaves_out_other_peoples_readings(as_bob, bob, charlie):
    mine = make_reading(bob)
    make_reading(charlie)
    make_reading(None)

    results = as_bob.get("/api/readings/").json()["results"]

    assert [r["id"] for r in results] == [str(mine.pk)]


def test_it_shows_staff_every_reading(as_alice, bob, charlie):
    make_reading(bob)
    make_reading(charlie)
    make_reading(None)

    assert as_alice.get("/api/readings/").json()["count"] == 3


def test_it_filters_by_status(as_bob, bob):
    make_reading(bob, "Still queued?")
    done = make_reading(bob, "Done?")
    Reading.objects.filter(pk=done.pk).update(status=ReadingStatus.DONE)

    results = as_bob.get("/api/readings/?status=done").json()["results"]

    assert [r["id"] for r in results] == [str(done.pk)]


def test_it_refuses_an_unknown_status(as_bob):
    response = as_bob.get("/api/readings/?status=finished")

    assert response.status_code == 400
    assert response.json() == {"status": ['"finished" is not a valid choice.']}


def test_it_pages_twenty_readings_at_a_time(as_bob, bob):
    for n in range(21):
        make_reading(bob, f"Question {n}?")

    page1 = as_bob.get("/api/readings/").json()
    page2 = as_bob.get(page1["next"]).json()

    assert page1["count"] == 21
    assert len(page1["results"]) == 20
    assert page1["results"][0]["question"] == "Question 20?"
    assert [r["question"] for r in page2["results"]] == ["Question 0?"]
    assert page2["next"] is None


def test_it_lists_readings_in_a_fixed_number_of_queries(as_bob, bob, django_assert_num_queries):
    for _ in range(5):
        make_reading(bob)

    # A count and a page, with the spread joined.
    with django_assert_num_queries(2):
        as_bob.get("/api/readings/")
