"""A queued reading's place in the line and expected start, in the API and on its page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from readings.models import Reading, ReadingStatus
from readings.queue_place import queue_place
from readings.services import CardChoice, reading_create
from tests.readings.api.conftest import client_for

pytestmark = pytest.mark.django_db

CARDS = [CardChoice("the-fool"), CardChoice("the-magician"), CardChoice("the-star")]


def ask(owner, question="Next?", dispatched_ago_s=None):
    reading = reading_create(owner=owner, spread="three_card", question=question, cards=CARDS)
    if dispatched_ago_s is not None:
        at = timezone.now() - timedelta(seconds=dispatched_ago_s)
        Reading.objects.filter(pk=reading.pk).update(dispatched_at=at)
    reading.refresh_from_db()
    return reading


def started_lately(owner, count):
    """`count` readings the workers started in the last few minutes: the pace."""
    for n in range(count):
        done = ask(owner, question=f"Earlier {n}?")
        Reading.objects.filter(pk=done.pk).update(
            status=ReadingStatus.DONE, started_at=timezone.now() - timedelta(minutes=2)
        )


def test_a_reading_waits_behind_those_handed_to_the_worker_before_it(bob, charlie):
    first = ask(charlie, dispatched_ago_s=30)
    second = ask(bob, dispatched_ago_s=20)
    waiting_in_the_database = ask(bob)  # bob's slots are full: it is not handed over yet
    started_lately(charlie, 20)  # 20 in 10 minutes: one every 30 s

    assert queue_place(first).position == 1
    assert queue_place(second).position == 2
    place = queue_place(waiting_in_the_database)
    assert place.position == 3
    expected_in = (place.expected_start_at - timezone.now()).total_seconds()
    assert 80 < expected_in < 95  # three places at 30 s each

    body = client_for(bob).get(f"/api/readings/{waiting_in_the_database.pk}/").json()
    assert body["queue_position"] == 3
    assert body["expected_start_at"] is not None


def test_nothing_is_said_of_the_line_once_a_reading_runs_or_when_no_pace_is_known(bob):
    reading = ask(bob, dispatched_ago_s=5)
    assert queue_place(reading).expected_start_at is None  # nothing started lately

    Reading.objects.filter(pk=reading.pk).update(status=ReadingStatus.RUNNING)
    body = client_for(bob).get(f"/api/readings/{reading.pk}/").json()
    assert (body["queue_position"], body["expected_start_at"]) == (None, None)


def test_the_page_of_a_queued_reading_says_its_place_and_when_it_should_start(client, bob):
    ask(bob, question="Ahead?", dispatched_ago_s=10)
    reading = ask(bob)
    started_lately(bob, 10)  # one a minute
    client.force_login(bob)

    page = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()

    assert "대기 중: 2번째 순서이며, 약 2분 뒤에 시작할 예정입니다." in page
    english = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Queued: number 2 in line, expected to start in about 2 minutes." in english
