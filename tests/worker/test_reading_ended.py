"""readings announces; the worker acts (readings/signals.py): a submitted reading joins the
fair queue, and a reading that ends lets its owner's next one in."""

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from readings.engine import run_reading_sync
from readings.models import ReadingStatus
from readings.services import reading_create, submit

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def queued() -> list[str]:
    return [SignedPackage.loads(job.payload)["args"][0] for job in OrmQ.objects.order_by("id")]


def test_a_reading_that_ends_lets_its_owners_next_one_into_the_queue(bob, emulator, settings):
    settings.READINGS_QUEUED_PER_USER = 1
    first = reading_create(owner=bob, spread="three_card", question="First?")
    second = reading_create(owner=bob, spread="three_card", question="Second?")
    submit(first)
    submit(second)
    assert queued() == [str(first.pk)]  # the second waits for its owner's turn

    # The engine ends the first one, as a worker would; nothing calls the queue directly.
    assert run_reading_sync(first.pk).status == ReadingStatus.DONE

    assert queued() == [str(first.pk), str(second.pk)]
