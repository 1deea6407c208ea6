"""People with API clients, and readings built row by row (the engine is not run here)."""

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from readings.models import Reading, ReadingStatus, ReadingTask, TaskStatus
from readings.services import CardChoice, reading_create
from spreads.models import TaskType

THREE_CARDS = [
    CardChoice("the-fool", reversed=False),
    CardChoice("the-magician", reversed=True),
    CardChoice("the-high-priestess", reversed=False),
]


@pytest.fixture
def api():
    return APIClient()


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def as_alice(alice):
    return client_for(alice)


@pytest.fixture
def as_bob(bob):
    return client_for(bob)


@pytest.fixture
def as_charlie(charlie):
    return client_for(charlie)


@pytest.fixture
def queued_reading(bob):
    """A three-card reading of bob's, just created: the worker has not touched it."""
    return reading_create(
        owner=bob, spread="three_card", question="Should I move to Lisbon?", cards=THREE_CARDS
    )


def finish(reading: Reading) -> Reading:
    """Write what the engine would have written for a three-card reading that succeeded."""
    now = timezone.now()
    done = dict(status=TaskStatus.DONE, attempts=1, started_at=now, finished_at=now)
    ReadingTask.objects.bulk_create(
        [
            ReadingTask(
                reading=reading,
                task_type=TaskType.CARD_INTERPRETATION,
                phase=1,
                position_indexes=[1, 2, 3],
                model_used="claude-haiku-4-5",
                output="The Fool in the past.\n\nThe Magician reversed now.\n\n"
                "The High Priestess ahead.",
                cost_usd=Decimal("0.001000"),
                **done,
            ),
            ReadingTask(
                reading=reading,
                task_type=TaskType.OVERALL_READING,
                phase=2,
                model_used="claude-sonnet-4-5",
                output="A leap, a stall, then quiet knowing.",
                **done,
            ),
            ReadingTask(
                reading=reading,
                task_type=TaskType.RELATIONSHIPS,
                phase=2,
                model_used="claude-sonnet-4-5",
                output="The Fool and the Magician pull against each other.",
                **done,
            ),
            ReadingTask(
                reading=reading,
                task_type=TaskType.ADVICE,
                phase=3,
                model_used="claude-sonnet-4-5",
                output="Go, but pack your own tools.",
                **done,
            ),
        ]
    )
    Reading.objects.filter(pk=reading.pk).update(
        status=ReadingStatus.DONE,
        started_at=now,
        finished_at=now,
        wall_time_s=4.5,
        sequential_s=9.0,
        time_saved_s=4.5,
        critical_path_s=4.2,
        peak_concurrent_calls=2,
        calls=5,
        rate_limit_hits=1,
        retries=1,
        fallbacks=0,
        input_tokens=1200,
        output_tokens=800,
        cost_usd=Decimal("0.012345"),
    )
    reading.refresh_from_db()
    return reading


@pytest.fixture
def finished_reading(queued_reading):
    return finish(queued_reading)
