import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from spreads.models import PromptTemplate, Spread
from spreads.prompts import render_prompt, sample_context

pytestmark = pytest.mark.django_db


def errors_of(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        instance.full_clean()
    return info.value.message_dict


def problems_of(instance) -> dict[str, list[str]]:
    """What the admin would refuse the instance for: {} when it accepts it."""
    try:
        instance.full_clean()
    except ValidationError as exc:
        return exc.message_dict
    return {}


def test_it_rejects_a_batch_size_above_the_card_count():
    spread = Spread(slug="tiny", name="Tiny", card_count=3, batch_size=4)
    assert "between 1 and the card count (3)" in errors_of(spread)["batch_size"][0]


def test_it_rejects_a_batch_size_of_zero():
    spread = Spread(slug="tiny", name="Tiny", card_count=3, batch_size=0)
    assert "batch_size" in errors_of(spread)


def test_it_rejects_more_cards_than_the_deck_holds():
    spread = Spread(slug="huge", name="Huge", card_count=79, batch_size=3)
    assert "less than or equal to 78" in errors_of(spread)["card_count"][0]


def test_the_database_refuses_more_cards_than_the_deck_holds_too():
    with pytest.raises(IntegrityError):
        Spread.objects.create(slug="huge", name="Huge", card_count=79, batch_size=3)


def test_it_rejects_zero_concurrent_calls():
    spread = Spread(slug="tiny", name="Tiny", card_count=3, batch_size=1, max_concurrent_calls=0)
    assert "at least 1" in " ".join(errors_of(spread)["max_concurrent_calls"])


def test_it_rejects_a_template_name_that_does_not_exist():
    spread = Spread(slug="tiny", name="Tiny", card_count=3, batch_size=1, card_template="nope.txt")
    assert "No prompt template named 'nope.txt'" in errors_of(spread)["card_template"][0]


def test_it_rejects_a_stored_template_that_does_not_render():
    PromptTemplate.objects.create(name="broken_card.txt", body="{% for c in batch %}no end")
    spread = Spread(
        slug="tiny", name="Tiny", card_count=3, batch_size=1, card_template="broken_card.txt"
    )
    assert "does not compile" in errors_of(spread)["card_template"][0]


def test_it_rejects_a_slug_that_cannot_prefix_an_environment_variable():
    spread = Spread(slug="Celtic-Cross", name="X", card_count=3, batch_size=1)
    assert "lowercase letters" in errors_of(spread)["slug"][0]


def test_it_validates_a_prompt_template_by_rendering_it_before_saving():
    template = PromptTemplate(name="my_card.txt", body="{{ question|nosuchfilter }}")
    assert "does not compile" in errors_of(template)["body"][0]


def test_it_accepts_a_prompt_template_that_renders():
    template = PromptTemplate(
        name="my_card.txt",
        body="Q: {{ question }} {% for c in batch %}{{ c.card.name }}{% endfor %}",
    )

    assert problems_of(template) == {}
    template.save()
    # ... a spread may choose it, and a reading's prompt is what it renders.
    spread = Spread(
        slug="tiny", name="Tiny", card_count=3, batch_size=1, card_template=template.name
    )
    assert problems_of(spread) == {}
    context = sample_context()
    names = "".join(drawn.card.name for drawn in context.batch)
    assert render_prompt(template.name, context) == f"Q: {context.question} {names}"
