"""Staff write a spread's name, description and positions' names per language; readers see
them in their page's language, falling back to the shipped translation, then to English."""

import pytest
from django.core.exceptions import ValidationError

from readings.services import CardChoice, reading_create
from spreads.models import Spread, SpreadText

pytestmark = pytest.mark.django_db

CARDS = [CardChoice("the-tower"), CardChoice("the-star"), CardChoice("ace-of-cups")]


def test_staffs_korean_words_for_a_spread_are_what_korean_readers_see(client, bob):
    spread = Spread.objects.get(slug="three_card")
    SpreadText.objects.create(
        spread=spread,
        language="ko",
        name="세 장의 이야기",
        description="지나온 길, 지금, 다가올 길.",
        position_names="지나온 길\n\n다가올 길",
    )
    reading = reading_create(owner=bob, spread=spread, question="?", cards=CARDS)
    client.force_login(bob)

    home = client.get("/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    page = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    english = client.get(f"/readings/{reading.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "세 장의 이야기" in home and "지나온 길, 지금, 다가올 길." in home
    assert "세 장의 이야기" in page
    assert "1. 지나온 길" in page and "3. 다가올 길" in page
    assert "2. 현재" in page  # left empty: the shipped translation of "Present"
    assert "Three Card" in english and "1. Past" in english


def test_more_position_names_than_positions_are_refused_with_a_message():
    text = SpreadText(
        spread=Spread.objects.get(slug="three_card"), language="ko", position_names="a\nb\nc\nd"
    )
    with pytest.raises(ValidationError) as refused:
        text.full_clean()
    assert "4 names for 3 positions" in str(refused.value)
