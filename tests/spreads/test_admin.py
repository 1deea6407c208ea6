"""Staff configure spreads in the admin: the test client posts the real admin forms."""

import pytest

from spreads.layout import layout_of
from spreads.models import Spread

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/spreads/spread/add/"


def spread_form(positions: list[tuple[int, str, str]], **fields) -> dict:
    data = {
        "name": "Year Ahead",
        "slug": "year_ahead",
        "description": "",
        "card_count": 12,
        "is_active": "on",
        "supports_parallel": "on",
        "batch_size": 4,
        "max_concurrent_calls": 6,
        "max_tokens": 4096,
        "economy_fallback": "standard",
        "card_template": "",
        "overall_template": "",
        "relationships_template": "",
        "advice_template": "",
        "positions-TOTAL_FORMS": len(positions),
        "positions-INITIAL_FORMS": 0,
        "positions-MIN_NUM_FORMS": 0,
        "positions-MAX_NUM_FORMS": 1000,
        "texts-TOTAL_FORMS": 0,
        "texts-INITIAL_FORMS": 0,
        "texts-MIN_NUM_FORMS": 0,
        "texts-MAX_NUM_FORMS": 1000,
    }
    for i, (index, name, meaning) in enumerate(positions):
        data[f"positions-{i}-index"] = index
        data[f"positions-{i}-name"] = name
        data[f"positions-{i}-meaning"] = meaning
        data[f"positions-{i}-rotation"] = 0  # the form's select always sends one
    data.update(fields)
    return data


def months(n: int) -> list[tuple[int, str, str]]:
    return [(i, f"Month {i}", f"What month {i} brings.") for i in range(1, n + 1)]


def test_it_lets_staff_add_a_twelve_card_spread_with_no_code_change(staff_client):
    response = staff_client.post(ADD_URL, spread_form(months(12)))

    assert response.status_code == 302, response.context["adminform"].errors
    spread = Spread.objects.get(slug="year_ahead")
    assert spread.positions.count() == 12
    assert (spread.batch_size, spread.max_concurrent_calls) == (4, 6)
    spread.full_clean()


def test_staff_choose_whether_a_failed_economy_request_fails_the_reading(staff_client):
    response = staff_client.post(ADD_URL, spread_form(months(12), economy_fallback="fail"))

    assert response.status_code == 302, response.context["adminform"].errors
    assert Spread.objects.get(slug="year_ahead").economy_fallback == "fail"


def test_it_shows_the_three_seeded_spreads_to_staff(staff_client):
    page = staff_client.get("/admin/spreads/spread/").content.decode()
    for name in ["Three Card", "Celtic Cross", "Horoscope"]:
        assert name in page


def test_it_rejects_a_spread_whose_positions_do_not_match_its_card_count(staff_client):
    response = staff_client.post(ADD_URL, spread_form(months(11)))

    assert response.status_code == 200
    assert "has 12 cards but 11 positions" in response.content.decode()
    assert not Spread.objects.filter(slug="year_ahead").exists()


def test_it_rejects_positions_numbered_with_a_gap(staff_client):
    positions = months(11) + [(13, "Month 13", "Too far.")]
    response = staff_client.post(ADD_URL, spread_form(positions))

    assert "Number the positions 1 to 12" in response.content.decode()


def test_it_rejects_a_batch_size_larger_than_the_spread(staff_client):
    response = staff_client.post(ADD_URL, spread_form(months(12), batch_size=13))

    assert "Batch size must be between 1 and the card count (12)" in response.content.decode()
    assert not Spread.objects.filter(slug="year_ahead").exists()


def test_it_rejects_a_spread_with_more_cards_than_the_deck(staff_client):
    response = staff_client.post(ADD_URL, spread_form(months(79), card_count=79, batch_size=3))

    assert response.status_code == 200
    assert "less than or equal to 78" in response.content.decode()
    assert not Spread.objects.filter(slug="year_ahead").exists()


def test_it_keeps_a_spread_unchanged_when_an_edit_is_rejected(staff_client):
    spread = Spread.objects.get(slug="celtic_cross")
    url = f"/admin/spreads/spread/{spread.pk}/change/"
    data = spread_form([], name="Celtic Cross", slug="celtic_cross", card_count=10, batch_size=0)
    data["positions-INITIAL_FORMS"] = 0

    response = staff_client.post(url, data)

    assert response.status_code == 200
    spread.refresh_from_db()
    assert spread.batch_size == 3
    assert spread.positions.count() == 10


def test_it_rejects_an_unpriceable_model_in_the_allocation_admin(staff_client):
    response = staff_client.post(
        "/admin/allocation/modelallocation/add/",
        {
            "task_type": "card_interpretation",
            "spread": Spread.objects.get(slug="celtic_cross").pk,
            "model": "claude-haiku-20240307",
            "max_tokens": 512,
            "temperature": 0.5,
            "fallback_models": "",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "claude-haiku-20240307 is not a model id genai-prices or a price override knows" in page
    assert "give it a price first" in page


def test_it_shows_staff_what_the_next_reading_will_use_and_why(staff_client, monkeypatch):
    monkeypatch.setenv("CELTIC_CROSS_CARD_MODEL", "claude-haiku-4-5")
    spread = Spread.objects.get(slug="celtic_cross")

    page = staff_client.get(f"/admin/spreads/spread/{spread.pk}/change/").content.decode()

    assert "claude-haiku-4-5 (environment)" in page
    assert "claude-sonnet-5-5 (global)" in page


def test_it_shows_the_template_help_with_slug_escaped(staff_client):
    page = staff_client.get(ADD_URL).content.decode()

    assert "Leave empty to use &lt;slug&gt;_&lt;task&gt;.txt" in page
    assert "&lt;slug&gt;_card.txt" in page  # the field's own help text


def test_a_new_spread_starts_with_numbered_labelled_position_rows(staff_client):
    page = staff_client.get(ADD_URL).content.decode()

    for n in (1, 2, 3):
        assert f'name="positions-{n - 1}-index" value="{n}"' in page
        assert f'aria-label="Position row {n}: name"' in page
    assert 'aria-label="Position row 1: meaning"' in page and 'rows="3"' in page
    assert 'aria-label="Position row 1: column"' in page
    assert 'aria-label="Position row 1: rotation"' in page


def test_staff_place_a_spreads_cards_and_readers_see_them_there(staff_client):
    data = spread_form(months(12))
    for i, (column, row) in enumerate([(c, r) for r in (1, 2, 3) for c in (1, 2, 3, 4)]):
        data[f"positions-{i}-column"] = column
        data[f"positions-{i}-row"] = row
    data["positions-0-column"] = ""  # a row without its column is refused, saying why

    refused = staff_client.post(ADD_URL, data)
    assert refused.status_code == 200
    assert "Give both a column and a row" in refused.content.decode()

    data["positions-0-column"] = 1
    assert staff_client.post(ADD_URL, data).status_code == 302
    layout = layout_of(Spread.objects.get(slug="year_ahead").positions.all())
    assert (layout.columns, layout.rows) == (4, 3)
    assert layout.place_of(12).column == 4 and layout.place_of(12).row == 3


def test_numbered_rows_left_blank_are_ignored(staff_client):
    data = spread_form(months(12))
    data["positions-TOTAL_FORMS"] = 13
    data["positions-12-index"] = 13  # the numbered blank row the page adds
    data["positions-12-rotation"] = 0  # and its select's default

    response = staff_client.post(ADD_URL, data)

    assert response.status_code == 302
    assert Spread.objects.get(slug="year_ahead").positions.count() == 12
