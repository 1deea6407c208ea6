"""GET /api/spreads/ and /api/cards/: what a client chooses from before asking for a reading."""

import pytest

from spreads.models import Spread

pytestmark = pytest.mark.django_db


def test_it_lists_the_active_spreads_with_their_positions(as_bob):
    response = as_bob.get("/api/spreads/")

    assert response.status_code == 200
    by_slug = {spread["slug"]: spread for spread in response.json()}
    assert set(by_slug) == {"three_card", "celtic_cross", "horoscope"}
    celtic = by_slug["celtic_cross"]
    assert celtic["name"] == "Celtic Cross"
    assert celtic["card_count"] == 10
    assert celtic["batch_size"] == 3
    assert celtic["max_concurrent_calls"] == 5
    assert celtic["supports_parallel"] is True
    assert celtic["description"].startswith("The classic ten-card spread")
    assert [p["index"] for p in celtic["positions"]] == list(range(1, 11))
    assert celtic["positions"][0] == {
        "index": 1,
        "name": "The Present",
        "meaning": "The heart of the matter: the situation as it stands.",
        "column": 2,
        "row": 2,
        "rotation": 0,
    }
    challenge = celtic["positions"][1]
    assert (challenge["column"], challenge["row"], challenge["rotation"]) == (2, 2, 90)


def test_it_leaves_out_inactive_spreads(as_bob):
    Spread.objects.filter(slug="horoscope").update(is_active=False)

    response = as_bob.get("/api/spreads/")

    assert [s["slug"] for s in response.json()] == ["three_card", "celtic_cross"]


def test_it_lists_spreads_in_two_queries_however_many_positions(as_bob, django_assert_num_queries):
    with django_assert_num_queries(2):
        as_bob.get("/api/spreads/")


def test_it_shows_one_spread_by_its_slug(as_bob):
    response = as_bob.get("/api/spreads/three_card/")

    assert response.status_code == 200
    assert response.json()["name"] == "Three Card"
    assert [p["name"] for p in response.json()["positions"]] == ["Past", "Present", "Future"]


def test_it_answers_404_for_an_unknown_spread(as_bob):
    assert as_bob.get("/api/spreads/tea_leaves/").status_code == 404


def test_it_answers_404_for_an_inactive_spread(as_bob):
    Spread.objects.filter(slug="horoscope").update(is_active=False)

    assert as_bob.get("/api/spreads/horoscope/").status_code == 404


def test_it_lists_the_whole_deck_unpaginated(as_bob):
    response = as_bob.get("/api/cards/")

    assert response.status_code == 200
    cards = response.json()
    assert len(cards) == 78
    assert cards[0] == {
        "slug": "the-fool",
        "name": "The Fool",
        "arcana": "major",
        "suit": "",
        "keywords": ["beginnings", "spontaneity", "leap of faith", "innocence"],
    }
    assert {c["suit"] for c in cards if c["arcana"] == "minor"} == {
        "wands",
        "cups",
        "swords",
        "pentacles",
    }
