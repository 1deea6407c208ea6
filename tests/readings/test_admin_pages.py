"""Staff look readings up in the admin: their cards, their tasks, their metrics. Read-only."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from readings.models import Reading, ReadingStatus, ReadingTask, TaskStatus
from readings.services import reading_create
from spreads.models import TaskType

pytestmark = pytest.mark.django_db

URL = "/admin/readings/reading/"


@pytest.fixture
def reading(bob):
    reading = reading_create(owner=bob, spread="three_card", question="Will the move go well?")
    Reading.objects.filter(pk=reading.pk).update(
        status=ReadingStatus.DONE,
        cost_usd=Decimal("0.01234500"),
        wall_time_s=4.0,
        sequential_s=10.0,
        time_saved_s=6.0,
        calls=5,
        rate_limit_hits=2,
        fallbacks=1,
        input_tokens=3400,
        output_tokens=1200,
    )
    started = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
    ReadingTask.objects.create(
        reading=reading,
        task_type=TaskType.CARD_INTERPRETATION,
        phase=1,
        position_indexes=[1, 2, 3],
        status=TaskStatus.DONE,
        model_used="claude-haiku-4-5",
        attempts=2,
        cost_usd=Decimal("0.00400000"),
        started_at=started,
        finished_at=started,
    )
    ReadingTask.objects.create(
        reading=reading,
        task_type=TaskType.ADVICE,
        phase=3,
        status=TaskStatus.FAILED,
        model_used="claude-sonnet-4-5",
        error="Every model failed.",
    )
    reading.refresh_from_db()
    return reading


def test_it_lists_readings_for_staff(staff_client, reading):
    response = staff_client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Three Card" in page
    assert "bob" in page
    assert f"/admin/readings/reading/{reading.pk}/change/" in page
    assert '<td class="field-cost">$0.01</td>' in page  # a total: dollars and cents
    assert '<td class="field-wall_time">4.00</td>' in page
    assert "Cost (USD)" in page and "Wall time (s)" in page  # units in the headings
    assert f'<td class="field-short_question">{reading.question[:60]}' in page
    assert '<td class="field-language">English</td>' in page


def test_it_explains_a_negative_time_saved_in_words(staff_client, reading):
    Reading.objects.filter(pk=reading.pk).update(
        wall_time_s=5.14, sequential_s=4.5, time_saved_s=-0.64
    )

    page = staff_client.get(f"{URL}{reading.pk}/change/").content.decode()

    assert "None: the reading took 0.64 s longer than its calls one after another" in page
    assert "-0.64 s" not in page


def test_it_shows_a_reading_with_its_cards_tasks_and_metrics(staff_client, reading):
    response = staff_client.get(f"{URL}{reading.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Will the move go well?" in page
    for card in reading.drawn_cards.select_related("card"):
        assert card.card.name in page
    assert "Card interpretation" in page and "Advice" in page
    assert "claude-haiku-4-5" in page and "claude-sonnet-4-5" in page
    assert "$0.004" in page  # the card task's cost, every digit
    assert "$0.01 ($0.012345 exactly)" in page  # the reading's total, then every digit
    assert "Upright" in page or "Reversed" in page  # words, not a red cross for "upright"
    assert "Every model failed." in page
    assert "2.5x faster than one call at a time" in page
    assert "3,400 / 1,200" in page
    assert f"/admin/allocation/llmcall/?reading__id__exact={reading.pk}" in page
    assert 'name="_save"' not in page  # read-only


def test_it_offers_no_way_to_add_change_or_delete_a_reading(staff_client, reading):
    assert staff_client.get(f"{URL}add/").status_code == 403
    assert staff_client.post(f"{URL}{reading.pk}/delete/").status_code == 403
    assert 'href="/admin/readings/reading/add/"' not in staff_client.get(URL).content.decode()
    assert Reading.objects.filter(pk=reading.pk).exists()


def test_it_finds_a_reading_by_the_start_of_its_id(staff_client, reading):
    other = reading_create(spread="three_card", question="Another question?")

    page = staff_client.get(URL, {"q": str(reading.pk)[:8]}).content.decode()

    assert f"{reading.pk}/change/" in page and f"{other.pk}/change/" not in page


def test_it_finds_a_reading_by_its_question(staff_client, reading):
    other = reading_create(spread="three_card", question="Another question?")

    page = staff_client.get(URL, {"q": "move"}).content.decode()

    assert f"{reading.pk}/change/" in page and f"{other.pk}/change/" not in page


def test_it_filters_readings_by_status(staff_client, reading):
    queued = reading_create(spread="three_card", question="Another question?")

    page = staff_client.get(URL, {"status__exact": "done"}).content.decode()

    assert f"{reading.pk}/change/" in page and f"{queued.pk}/change/" not in page


def test_it_keeps_readings_from_non_staff(client, bob, reading):
    client.force_login(bob)

    response = client.get(f"{URL}{reading.pk}/change/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_reading_page_shows_each_positions_text_and_follows_a_running_reading(
    staff_client, bob
):
    running = reading_create(owner=bob, spread="three_card", question="Will it rain?")
    Reading.objects.filter(pk=running.pk).update(status=ReadingStatus.RUNNING)
    ReadingTask.objects.create(
        reading=running,
        task_type=TaskType.CARD_INTERPRETATION,
        phase=1,
        position_indexes=[1, 2, 3],
        status=TaskStatus.DONE,
        texts={"1": "Past text.", "2": "Present text.", "3": "Future text."},
    )

    html = staff_client.get(f"{URL}{running.pk}/change/").content.decode()

    for position, text in [(1, "Past text."), (2, "Present text."), (3, "Future text.")]:
        assert f'data-part="card-{position}">{text}</p>' in html
    assert 'data-part="advice">(not written yet)</p>' in html
    assert 'data-status="running"' in html
    assert "readings/admin_reading.js" in html  # fetches the text again until it is done


def test_it_shows_an_economy_batch_with_each_request_and_its_task(staff_client, reading):
    from readings.models import BatchRequest, BatchStatus, ProviderBatch

    task = reading.tasks.get(phase=1)
    batch = ProviderBatch.objects.create(
        batch_id="msgbatch_01abc",
        model="claude-haiku-4-5",
        status=BatchStatus.REJECTED,
        request_count=1,
        error="400 Forced batch rejection.",
    )
    BatchRequest.objects.create(
        batch=batch, task=task, custom_id=f"task-{task.pk}-1", result="rejected"
    )

    listing = staff_client.get("/admin/readings/providerbatch/").content.decode()
    page = staff_client.get(f"/admin/readings/providerbatch/{batch.pk}/change/")

    assert "msgbatch_01abc" in listing
    assert page.status_code == 200
    text = page.content.decode()
    assert f"task-{task.pk}-1" in text and "400 Forced batch rejection." in text
    assert "Save" not in text  # staff only look
