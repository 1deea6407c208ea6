"""A reading has a language: Korean readings are written from Korean templates, and the
emulator answers them in Korean."""

import re

import pytest

from readings.engine import run_reading_sync
from readings.models import Language, ReadingStatus
from readings.selectors import reading_results
from readings.services import reading_create
from readings.store import state_for
from spreads.models import PromptTemplate, Spread
from spreads.prompts import template_name_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_a_korean_question_gets_a_korean_reading(emulator):
    reading = reading_create(spread="three_card", question="이직해도 될까요?", language="ko")

    reading = run_reading_sync(reading.pk)

    assert reading.status == ReadingStatus.DONE
    results = reading_results(reading)
    for text in [*(c["text"] for c in results["cards"]), results["overall"], results["advice"]]:
        assert HANGUL.search(text), text
        assert "The cards speak" not in text


def test_an_english_reading_stays_in_english(emulator):
    reading = run_reading_sync(reading_create(spread="three_card", question="Move?").pk)

    assert not any(HANGUL.search(c["text"]) for c in reading_results(reading)["cards"])


def test_korean_prompts_come_from_the_korean_templates():
    spread = Spread.objects.get(slug="celtic_cross")
    reading = reading_create(spread=spread, question="올해는 어떨까요?", language=Language.KOREAN)

    names = state_for(reading).templates

    # No Celtic Cross template in Korean ships, so the generic Korean ones serve.
    assert names["card"] == "card_ko.txt"
    assert names["guide"] == "guide_ko.txt"
    assert template_name_for(spread, "card") == "celtic_cross_card.txt"


def test_staff_can_override_a_korean_template_like_any_other():
    spread = Spread.objects.get(slug="three_card")
    PromptTemplate.objects.create(name="three_card_advice_ko.txt", body="조언: {{ overall }}")

    assert template_name_for(spread, "advice", "ko") == "three_card_advice_ko.txt"


def test_an_unsupported_language_is_refused_naming_the_supported_ones():
    from django.core.exceptions import ValidationError
    from django.utils import translation

    with translation.override("en"), pytest.raises(ValidationError) as refused:
        reading_create(spread="three_card", question="Move?", language="fr")

    assert refused.value.message_dict["language"] == [
        "'fr' is not a supported language; use one of: en, ko."
    ]
