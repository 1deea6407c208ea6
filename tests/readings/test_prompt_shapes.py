"""A reading's calls sized by arithmetic, against the calls the engine renders for it."""

import random

import pytest

from allocation.allocator import get_allocator
from readings import prompt_shapes
from readings.prompt_shapes import _render_calls, spread_shape
from spreads import selectors
from spreads.models import PromptTemplate, Spread, TaskType
from spreads.planning import plan_tasks
from spreads.prompts import DrawnCard, template_names

pytestmark = pytest.mark.django_db


def setting_of(slug, language="en"):
    spread = Spread.objects.get(slug=slug)
    configs = {t: get_allocator().get_config(t, spread=spread) for t in TaskType.values}
    plan = plan_tasks(spread.card_count, spread.batch_size)
    return spread, configs, plan, language


def a_reading(spread, seed):
    rng = random.Random(seed)
    positions = selectors.spread_positions(spread)
    cards = rng.sample(list(selectors.deck()), len(positions))
    return [
        DrawnCard(position=p, card=c, reversed=rng.random() < 0.5)
        for p, c in zip(positions, cards, strict=True)
    ]


def rendered_sizes(spread, configs, plan, language, question, cards):
    templates = template_names(spread, prompt_shapes.KINDS, language)
    calls = _render_calls(spread, configs, plan, cards, question, templates, economy=False)
    return [[len(part.text) for part in parts] for parts, _ in calls]


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize("slug", ["celtic_cross", "three_card"])
def test_a_readings_calls_are_sized_within_2_percent_of_what_the_engine_renders(slug, language):
    spread, configs, plan, language = setting_of(slug, language)
    shape = spread_shape(spread, configs, plan, language, economy=False)

    for seed, question in enumerate(["Love?", "Where is my career going this year? " * 12]):
        cards = a_reading(spread, seed)
        sized = shape.sized_calls(question, cards)
        rendered = rendered_sizes(spread, configs, plan, language, question, cards)

        for (parts, _), real in zip(sized, rendered, strict=True):
            assert sum(p.chars for p in parts) == pytest.approx(sum(real), rel=0.02)


def test_a_longer_question_grows_each_part_by_exactly_the_text_it_adds():
    spread, configs, plan, language = setting_of("celtic_cross")
    shape = spread_shape(spread, configs, plan, language, economy=False)
    cards = a_reading(spread, 1)

    short = shape.sized_calls("Love?", cards)
    long = shape.sized_calls("Love?" + "x" * 500, cards)
    real_short = rendered_sizes(spread, configs, plan, language, "Love?", cards)
    real_long = rendered_sizes(spread, configs, plan, language, "Love?" + "x" * 500, cards)

    for (a, _), (b, _), ra, rb in zip(short, long, real_short, real_long, strict=True):
        assert [y.chars - x.chars for x, y in zip(a, b, strict=True)] == [
            y - x for x, y in zip(ra, rb, strict=True)
        ]


def test_a_configuration_is_rendered_once_and_again_after_staff_edit_a_template():
    spread, configs, plan, language = setting_of("celtic_cross")
    first = spread_shape(spread, configs, plan, language, economy=False)
    assert spread_shape(spread, configs, plan, language, economy=False) is first

    PromptTemplate.objects.create(
        name="celtic_cross_advice.txt", body="Step: advice. Be brief.\n{{ overall }}"
    )
    edited = spread_shape(spread, configs, plan, language, economy=False)

    advice = [i for i, t in enumerate(plan) if t.task_type == TaskType.ADVICE][0]
    assert edited.calls[advice].key != first.calls[advice].key
    own_part = edited.calls[advice].parts[-1]
    assert own_part.chars < first.calls[advice].parts[-1].chars
