"""Fair queuing: each user has at most READINGS_QUEUED_PER_USER readings in the worker's
queue; the rest wait and join the back of the queue as earlier ones end."""

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from budgets.models import QuotaOverride
from readings.models import Reading, ReadingStatus
from readings.services import reading_create
from worker import dispatch as dispatch_module
from worker.dispatch import _fill_slots, dispatch, dispatch_all_waiting, dispatch_waiting

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["one message", "orm"])
def two_per_user(request, settings, monkeypatch, django_capture_on_commit_callbacks):
    """Each test runs both ways a user's slots are filled: Postgres's one message, and the
    ORM's queries (the way on other databases, the SQLite of `make run`)."""
    settings.READINGS_QUEUED_PER_USER = 2
    if request.param == "orm":
        monkeypatch.setattr(dispatch_module, "_fill_slots_in_one_message", _fill_slots)


def queue_order() -> list:
    """Reading ids in the worker's queue, first out first."""
    return [SignedPackage.loads(job.payload)["args"][0] for job in OrmQ.objects.order_by("id")]


def create(owner, question, capture):
    with capture(execute=True):
        reading = reading_create(owner=owner, spread="three_card", question=question)
        dispatch(reading)
    return str(reading.pk)


def test_one_users_burst_waits_behind_anothers_reading(
    bob, charlie, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    bobs = [create(bob, f"Bob {i}?", capture) for i in range(5)]
    charlies = create(charlie, "Charlie?", capture)

    assert queue_order() == [bobs[0], bobs[1], charlies]
    assert Reading.objects.filter(dispatched_at__isnull=True).count() == 3

    # Bob's first reading ends: his next joins the back of the queue.
    Reading.objects.filter(pk=bobs[0]).update(status=ReadingStatus.DONE)
    with capture(execute=True):
        assert dispatch_waiting(bob.pk) == [Reading.objects.get(pk=bobs[2]).pk]
    assert queue_order()[-1] == bobs[2]


def test_readings_without_an_owner_or_of_an_exempt_user_join_at_once(
    bob, django_capture_on_commit_callbacks
):
    QuotaOverride.objects.create(user=bob, exempt_from_throttles=True)
    ids = [create(bob, f"Bench {i}?", django_capture_on_commit_callbacks) for i in range(4)]
    ids.append(create(None, "Command line?", django_capture_on_commit_callbacks))
    assert queue_order() == ids


def test_a_lost_dispatch_is_caught_up(bob, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    ids = [create(bob, f"Bob {i}?", capture) for i in range(3)]
    Reading.objects.filter(pk__in=ids[:2]).update(status=ReadingStatus.DONE)
    with capture(execute=True):
        assert dispatch_all_waiting() == 1
    assert queue_order()[-1] == ids[2]
