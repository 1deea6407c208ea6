"""POST /api/readings/: a reading is stored, queued for the worker, and answered with 202.

The rules (spread, question, cards) are services.reading_create's; these tests check that the
API passes each rule's message back under the field it concerns."""

import json

import pytest
from django.db import transaction
from django_q.models import OrmQ

from readings.models import DrawnCard, Reading, ReadingStatus
from readings.services import reading_create
from spreads.models import Spread

pytestmark = pytest.mark.django_db

CARDS = [
    {"card": "the-fool", "reversed": False},
    {"card": "the-magician", "reversed": True},
    {"card": "the-high-priestess", "reversed": False},
]


def body(**changes):
    data = {"spread": "three_card", "question": "Should I move to Lisbon?", "cards": CARDS}
    return data | changes


def post(client, data):
    return client.post("/api/readings/", data, format="json")


def post_raw(client, text, content_type="application/json"):
    return client.post("/api/readings/", text, content_type=content_type)


def test_it_answers_202_with_the_readings_id_status_and_url(as_bob):
    response = post(as_bob, body())

    assert response.status_code == 202
    reading = Reading.objects.get()
    assert response.json() == {
        "id": str(reading.pk),
        "status": "queued",
        "url": f"http://testserver/api/readings/{reading.pk}/",
    }


def test_it_points_the_location_header_at_the_reading(as_bob):
    response = post(as_bob, body())

    assert response["Location"] == response.json()["url"]
    assert as_bob.get(response["Location"]).status_code == 200


def test_it_queues_the_reading_for_the_worker_in_the_transaction_that_creates_it(as_bob):
    response = post(as_bob, body())

    job = OrmQ.objects.get().task
    assert job["func"] == "worker.tasks.reading_job"
    assert job["args"] == (response.json()["id"],)


def test_a_reading_and_its_job_commit_together_or_not_at_all(bob):
    with pytest.raises(RuntimeError), transaction.atomic():
        reading_create(owner=bob, spread="three_card", question="Now?", submitted=True)
        assert OrmQ.objects.count() == 1
        raise RuntimeError("the process dies before the commit")

    assert not Reading.objects.exists()
    assert not OrmQ.objects.exists()


def test_it_queues_exactly_one_job(as_bob, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post(as_bob, body())

    assert OrmQ.objects.count() == 1


def test_it_stores_the_chosen_cards_in_position_order(as_bob):
    post(as_bob, body())

    drawn = DrawnCard.objects.order_by("position__index")
    assert [(d.position.name, d.card.slug, d.reversed) for d in drawn] == [
        ("Past", "the-fool", False),
        ("Present", "the-magician", True),
        ("Future", "the-high-priestess", False),
    ]


def test_it_makes_the_caller_the_owner(as_bob, bob):
    post(as_bob, body())

    reading = Reading.objects.get()
    assert reading.owner == bob
    assert reading.status == ReadingStatus.QUEUED
    assert reading.spread.slug == "three_card"
    assert reading.question == "Should I move to Lisbon?"


def test_it_draws_the_cards_when_none_are_given(as_bob):
    data = body()
    del data["cards"]

    response = post(as_bob, data)

    assert response.status_code == 202
    assert DrawnCard.objects.count() == 3
    assert DrawnCard.objects.values("card").distinct().count() == 3


def test_it_draws_the_cards_when_cards_is_null(as_bob):
    response = post(as_bob, body(spread="celtic_cross", cards=None))

    assert response.status_code == 202
    assert DrawnCard.objects.count() == 10


def test_it_takes_cards_by_name_and_upright_by_default(as_bob):
    cards = [{"card": "The Fool"}, {"card": "The Magician"}, {"card": "The High Priestess"}]

    response = post(as_bob, body(cards=cards))

    assert response.status_code == 202
    assert list(DrawnCard.objects.values_list("reversed", flat=True)) == [False] * 3


def test_it_accepts_a_question_of_exactly_1000_characters(as_bob):
    assert post(as_bob, body(question="?" * 1000)).status_code == 202


# --- Refusals: 400, with a message for the field at fault ----------------------------------


def test_it_refuses_an_unknown_spread(as_bob):
    response = post(as_bob, body(spread="tea_leaves"))

    assert response.status_code == 400
    assert response.json() == {"spread": ["No spread called 'tea_leaves'."]}


def test_it_refuses_an_inactive_spread(as_bob):
    Spread.objects.filter(slug="three_card").update(is_active=False)

    response = post(as_bob, body())

    assert response.status_code == 400
    assert response.json() == {"spread": ["The spread 'three_card' is not active."]}


def test_it_refuses_a_body_without_a_spread(as_bob):
    data = body()
    del data["spread"]

    response = post(as_bob, data)

    assert response.status_code == 400
    assert response.json() == {"spread": ["This field is required."]}


def test_it_refuses_the_wrong_number_of_cards(as_bob):
    response = post(as_bob, body(cards=CARDS[:2]))

    assert response.status_code == 400
    assert response.json() == {"cards": ["Three Card takes 3 cards; 2 were given."]}


def test_it_refuses_an_empty_list_of_cards(as_bob):
    response = post(as_bob, body(cards=[]))

    assert response.status_code == 400
    assert response.json() == {"cards": ["Three Card takes 3 cards; 0 were given."]}


def test_it_refuses_a_card_drawn_twice(as_bob):
    cards = [CARDS[0], CARDS[1], {"card": "the-fool", "reversed": True}]

    response = post(as_bob, body(cards=cards))

    assert response.status_code == 400
    assert response.json() == {"cards": ["Each card can appear once: The Fool repeated."]}


def test_it_refuses_unknown_cards(as_bob):
    cards = [CARDS[0], {"card": "the-joker"}, {"card": "the-jester"}]

    response = post(as_bob, body(cards=cards))

    assert response.status_code == 400
    assert response.json() == {"cards": ["Unknown cards: the-joker, the-jester."]}


@pytest.mark.parametrize("question", ["", "   \n "])
def test_it_refuses_an_empty_question(as_bob, question):
    response = post(as_bob, body(question=question))

    assert response.status_code == 400
    assert response.json() == {"question": ["Ask a question: it cannot be empty."]}


def test_it_refuses_a_question_over_1000_characters(as_bob):
    response = post(as_bob, body(question="?" * 1001))

    assert response.status_code == 400
    assert response.json() == {
        "question": ["Keep the question under 1000 characters (it has 1001)."]
    }


def test_it_refuses_a_body_without_a_question(as_bob):
    data = body()
    del data["question"]

    response = post(as_bob, data)

    assert response.status_code == 400
    assert response.json() == {"question": ["This field is required."]}


def test_it_says_what_is_wrong_with_malformed_json(as_bob):
    response = post_raw(as_bob, '{"spread": "three_card", "question": ')

    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")


def test_it_refuses_a_body_that_is_not_an_object(as_bob):
    response = post_raw(as_bob, json.dumps([body()]))

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


def test_it_refuses_a_body_that_is_not_json(as_bob):
    response = post_raw(
        as_bob, "spread=three_card&question=Why", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["detail"]


def test_it_refuses_cards_that_are_not_a_list(as_bob):
    response = post(as_bob, body(cards="the-fool, the-magician, the-high-priestess"))

    assert response.status_code == 400
    assert response.json() == {"cards": ['Expected a list of items but got type "str".']}


def test_it_refuses_a_card_without_its_card_field(as_bob):
    cards = [CARDS[0], {"reversed": True}, CARDS[2]]

    response = post(as_bob, body(cards=cards))

    assert response.status_code == 400
    assert response.json() == {"cards": {"1": {"card": ["This field is required."]}}}


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "maybe", []])
def test_it_refuses_reversed_that_is_not_a_boolean(as_bob, value):
    cards = [CARDS[0], CARDS[1], {"card": "the-high-priestess", "reversed": value}]

    response = post(as_bob, body(cards=cards))

    assert response.status_code == 400
    assert response.json() == {
        "cards": {"2": {"reversed": ["Must be true or false (a JSON boolean)."]}}
    }


def test_it_refuses_reversed_null(as_bob):
    cards = [CARDS[0], CARDS[1], {"card": "the-high-priestess", "reversed": None}]

    response = post(as_bob, body(cards=cards))

    assert response.status_code == 400
    assert response.json() == {"cards": {"2": {"reversed": ["This field may not be null."]}}}


@pytest.mark.parametrize(
    "data",
    [
        body(spread="tea_leaves"),
        body(cards=CARDS[:2]),
        body(cards=[CARDS[0], CARDS[0], CARDS[1]]),
        body(question=""),
        body(question="?" * 1001),
        body(cards=[CARDS[0], CARDS[1], {"card": "the-empress", "reversed": "no"}]),
    ],
    ids=["spread", "count", "duplicate", "empty-question", "long-question", "reversed"],
)
def test_it_stores_and_queues_nothing_when_it_refuses(
    as_bob, data, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(as_bob, data)

    assert response.status_code == 400
    assert Reading.objects.count() == 0
    assert DrawnCard.objects.count() == 0
    assert OrmQ.objects.count() == 0


def test_it_refuses_cards_that_are_not_objects(as_bob):
    response = post(as_bob, body(cards=["the-fool", "the-magician", "the-high-priestess"]))

    assert response.status_code == 400
    assert response.json()["cards"]["0"] == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got str."]
    }


def test_it_reports_every_fields_problem_at_once(as_bob):
    response = post(as_bob, body(spread="nope", question=""))

    assert response.status_code == 400
    assert set(response.json()) == {"spread", "question"}
    assert not Reading.objects.exists()


def test_it_creates_a_standard_reading_unless_asked_otherwise(as_bob):
    post(as_bob, body())

    assert Reading.objects.get().mode == "standard"


def test_it_takes_economy_mode(as_bob):
    response = post(as_bob, body(mode="economy"))

    assert response.status_code == 202
    assert Reading.objects.get().mode == "economy"


def test_it_refuses_an_unknown_mode_naming_the_allowed_ones(as_bob):
    response = post(as_bob, body(mode="turbo"))

    assert response.status_code == 400
    assert response.json() == {
        "mode": ['Unknown mode \'turbo\': use one of "standard", "economy".']
    }
    assert not Reading.objects.exists()
