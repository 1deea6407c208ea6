"""GET /api/readings/<id>/: progress while it runs, then the text, the metrics and the cost."""

import uuid
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from readings.models import Reading, ReadingStatus, ReadingTask, TaskStatus
from spreads.models import TaskType

pytestmark = pytest.mark.django_db


def get(client, reading):
    return client.get(f"/api/readings/{reading.pk}/")


def test_it_shows_the_reading_as_asked(as_bob, queued_reading):
    response = get(as_bob, queued_reading)

    assert response.status_code == 200
    data = response.json()
    assert data["id"] == str(queued_reading.pk)
    assert data["spread"] == {"slug": "three_card", "name": "Three Card"}
    assert data["question"] == "Should I move to Lisbon?"
    assert data["status"] == "queued"
    assert data["error"] == ""
    assert data["created_at"] is not None
    assert data["started_at"] is None
    assert data["finished_at"] is None


def test_it_counts_the_planned_tasks_before_the_worker_starts(as_bob, queued_reading):
    progress = get(as_bob, queued_reading).json()["progress"]

    # One batch of three cards, overall, relationships, advice.
    assert progress == {"done": 0, "total": 4, "tasks": []}


def test_it_shows_the_drawn_cards_before_any_text_is_written(as_bob, queued_reading):
    results = get(as_bob, queued_reading).json()["results"]

    assert results["cards"] == [
        {
            "index": 1,
            "position": "Past",
            "card": "The Fool",
            "card_slug": "the-fool",
            "orientation": "upright",
            "text": "",
        },
        {
            "index": 2,
            "position": "Present",
            "card": "The Magician",
            "card_slug": "the-magician",
            "orientation": "reversed",
            "text": "",
        },
        {
            "index": 3,
            "position": "Future",
            "card": "The High Priestess",
            "card_slug": "the-high-priestess",
            "orientation": "upright",
            "text": "",
        },
    ]
    assert results["overall"] == results["relationships"] == results["advice"] == ""


def test_it_shows_progress_task_by_task_while_running(as_bob, queued_reading):
    Reading.objects.filter(pk=queued_reading.pk).update(status=ReadingStatus.RUNNING)
    ReadingTask.objects.create(
        reading=queued_reading,
        task_type=TaskType.CARD_INTERPRETATION,
        phase=1,
        position_indexes=[1, 2, 3],
        status=TaskStatus.DONE,
        model_used="claude-haiku-4-5",
        output="One.\n\nTwo.\n\nThree.",
        attempts=2,
    )
    for task_type in (TaskType.OVERALL_READING, TaskType.RELATIONSHIPS):
        ReadingTask.objects.create(
            reading=queued_reading, task_type=task_type, phase=2, status=TaskStatus.RUNNING
        )
    ReadingTask.objects.create(reading=queued_reading, task_type=TaskType.ADVICE, phase=3)

    data = get(as_bob, queued_reading).json()

    assert data["status"] == "running"
    assert data["progress"]["done"] == 1
    assert data["progress"]["total"] == 4
    tasks = data["progress"]["tasks"]
    assert [(t["task_type"], t["phase"], t["status"]) for t in tasks] == [
        ("card_interpretation", 1, "done"),
        ("overall_reading", 2, "running"),
        ("relationships", 2, "running"),
        ("advice", 3, "pending"),
    ]
    assert tasks[0] == {
        "task_type": "card_interpretation",
        "phase": 1,
        "batch_index": 0,
        "positions": [1, 2, 3],
        "status": "done",
        "model_used": "claude-haiku-4-5",
        "attempts": 2,
        "started_at": None,
        "finished_at": None,
    }
    assert [c["text"] for c in data["results"]["cards"]] == ["One.", "Two.", "Three."]
    assert data["results"]["overall"] == ""


def test_it_shows_the_finished_readings_text_per_position(as_bob, finished_reading):
    data = get(as_bob, finished_reading).json()

    assert data["status"] == "done"
    assert data["finished_at"] is not None
    assert data["progress"]["done"] == data["progress"]["total"] == 4
    results = data["results"]
    assert [(c["position"], c["card"], c["text"]) for c in results["cards"]] == [
        ("Past", "The Fool", "The Fool in the past."),
        ("Present", "The Magician", "The Magician reversed now."),
        ("Future", "The High Priestess", "The High Priestess ahead."),
    ]
    assert results["overall"] == "A leap, a stall, then quiet knowing."
    assert results["relationships"] == "The Fool and the Magician pull against each other."
    assert results["advice"] == "Go, but pack your own tools."


def test_it_shows_the_metrics(as_bob, finished_reading):
    metrics = get(as_bob, finished_reading).json()["metrics"]

    assert metrics == {
        "wall_time_s": 4.5,
        "sequential_s": 9.0,
        "time_saved_s": 4.5,
        "critical_path_s": 4.2,
        "peak_concurrent_calls": 2,
        "calls": 5,
        "rate_limit_hits": 1,
        "retries": 1,
        "fallbacks": 0,
        "input_tokens": 1200,
        "output_tokens": 800,
    }


def test_it_gives_the_cost_as_a_decimal_string_never_a_float(as_bob, finished_reading):
    response = get(as_bob, finished_reading)

    assert response.json()["cost_usd"] == "0.012345"
    assert b'"cost_usd":"0.012345"' in response.content


def test_it_shows_why_a_reading_failed(as_bob, queued_reading):
    Reading.objects.filter(pk=queued_reading.pk).update(
        status=ReadingStatus.FAILED, error="Every model for advice is overloaded."
    )

    data = get(as_bob, queued_reading).json()

    assert data["status"] == "failed"
    assert data["error"] == "Every model for advice is overloaded."


def test_it_reads_a_reading_in_a_fixed_number_of_queries(
    as_bob, finished_reading, django_assert_max_num_queries
):
    # The reading with its spread, its tasks, its drawn cards with positions and cards.
    with django_assert_max_num_queries(3):
        assert get(as_bob, finished_reading).status_code == 200


def test_it_answers_404_for_a_reading_that_does_not_exist(as_bob):
    assert as_bob.get(f"/api/readings/{uuid.uuid4()}/").status_code == 404


def test_it_answers_404_for_an_id_that_is_not_a_uuid(as_bob):
    assert as_bob.get("/api/readings/42/").status_code == 404


def test_an_economy_reading_shows_queued_for_batch_with_an_expected_time(as_bob, bob):
    from readings import economy
    from readings.services import reading_create

    reading = reading_create(owner=bob, spread="three_card", question="Lisbon?", mode="economy")
    economy.start(reading.pk)

    data = get(as_bob, reading).json()

    assert data["mode"] == "economy"
    assert data["status"] == "running"
    assert data["status_detail"] == "queued for batch"
    # No batch has ended yet: each of the three phases is expected to take up to an hour.
    expected = datetime.fromisoformat(data["expected_ready_at"])
    assert timedelta(hours=2) < expected - timezone.now() < timedelta(hours=4)


def test_a_standard_or_finished_reading_has_no_expected_time(as_bob, queued_reading):
    data = get(as_bob, queued_reading).json()

    assert (data["mode"], data["status_detail"], data["expected_ready_at"]) == (
        "standard",
        "",
        None,
    )
