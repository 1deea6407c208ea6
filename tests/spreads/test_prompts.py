import pytest

from allocation.models import TaskType
from spreads.models import PromptTemplate, Spread
from spreads.prompts import render_prompt, sample_context, template_name_for, template_problem

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("slug", ["three_card", "celtic_cross", "horoscope"])
def test_it_gives_each_seeded_spread_its_own_templates(slug):
    spread = Spread.objects.get(slug=slug)
    for task_type in TaskType:
        name = template_name_for(spread, task_type.kind)
        assert name == f"{slug}_{task_type.kind}.txt"
        assert template_problem(name) is None


def test_it_falls_back_to_the_generic_templates_for_a_new_spread():
    spread = Spread(slug="year_ahead", name="Year Ahead", card_count=12, batch_size=4)
    assert template_name_for(spread, "card") == "card.txt"
    assert template_name_for(spread, "advice") == "advice.txt"


def test_it_treats_the_question_as_data_not_template_code():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)
    context.question = "Will {{ spread.slug }} & <b>love</b> {% now 'Y' %} last?"

    prompt = render_prompt("celtic_cross_card.txt", context)

    assert "Will {{ spread.slug }} & <b>love</b> {% now 'Y' %} last?" in prompt


def test_it_renders_the_cards_of_the_batch_with_their_orientation_and_meaning():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)
    first = context.batch[0]

    prompt = render_prompt("celtic_cross_card.txt", context)

    assert first.position.name in prompt
    assert first.card.name in prompt
    assert first.meaning in prompt


def test_a_template_stored_in_the_admin_overrides_the_file():
    PromptTemplate.objects.create(name="celtic_cross_advice.txt", body="Advise on: {{ question }}")
    context = sample_context(Spread.objects.get(slug="celtic_cross"))

    assert render_prompt("celtic_cross_advice.txt", context) == f"Advise on: {context.question}"
