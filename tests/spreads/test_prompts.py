import pytest

from spreads.models import PromptTemplate, Spread, TaskType
from spreads.prompts import (
    GUIDE,
    LAYOUT,
    RESULTS,
    CardResult,
    build_prompt,
    render_guide,
    render_prompt,
    sample_context,
    template_name_for,
    template_names,
    template_problem,
)

pytestmark = pytest.mark.django_db

KINDS = [t.kind for t in TaskType]


def prompt_for(spread, kind, context, **kwargs):
    return build_prompt(
        template_names(spread, KINDS), kind, context, later_phase=kind != "card", **kwargs
    )


@pytest.mark.parametrize("slug", ["three_card", "celtic_cross", "horoscope"])
def test_it_gives_each_seeded_spread_its_own_templates(slug):
    spread = Spread.objects.get(slug=slug)
    for kind in [*KINDS, GUIDE]:
        name = template_name_for(spread, kind)
        assert name == f"{slug}_{kind}.txt"
        assert template_problem(name) is None
    assert template_name_for(spread, LAYOUT) == "layout.txt"
    assert template_name_for(spread, RESULTS) == "card_results.txt"


def test_it_falls_back_to_the_generic_templates_for_a_new_spread():
    spread = Spread(slug="year_ahead", name="Year Ahead", card_count=12, batch_size=4)
    assert template_name_for(spread, "card") == "card.txt"
    assert template_name_for(spread, "advice") == "advice.txt"
    assert template_name_for(spread, GUIDE) == "guide.txt"


def test_it_treats_the_question_as_data_not_template_code():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)
    context.question = "Will {{ spread.slug }} & <b>love</b> {% now 'Y' %} last?"

    prompt = prompt_for(spread, "card", context)

    assert "Will {{ spread.slug }} & <b>love</b> {% now 'Y' %} last?" in prompt.text


def test_it_renders_the_cards_of_the_batch_with_their_orientation_and_meaning():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)
    first = context.batch[0]

    own = prompt_for(spread, "card", context).user[-1].text

    assert first.position.name in own
    assert first.card.name in own
    assert first.meaning in own


@pytest.mark.parametrize("slug", ["three_card", "celtic_cross", "horoscope"])
def test_every_call_carries_the_question_spread_positions_cards_and_results(slug):
    spread = Spread.objects.get(slug=slug)
    context = sample_context(spread)

    for kind in KINDS:
        text = prompt_for(spread, kind, context).text
        assert context.question in text
        for position in spread.positions.all():
            assert position.name in text and position.meaning in text
        for drawn in context.cards:
            assert f"{drawn.card.name}, {drawn.orientation}" in text
        if kind != "card":
            assert all(result.text in text for result in context.card_results)
    advice = prompt_for(spread, "advice", context).text
    assert context.overall in advice and context.relationships in advice


def test_shared_parts_come_first_in_identical_bytes_and_the_own_instruction_last():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)
    prompts = {kind: prompt_for(spread, kind, context) for kind in KINDS}

    guides = {p.system[0].text for p in prompts.values()}
    layouts = {p.user[0].text for p in prompts.values()}
    results = {p.user[1].text for kind, p in prompts.items() if kind != "card"}
    assert len(guides) == len(layouts) == len(results) == 1
    assert [p.user[-1].name for p in prompts.values()] == KINDS
    # The guide is the spread's, not the reading's: another reading sends the same bytes.
    other = sample_context(spread)
    other.question = "Something else entirely?"
    assert prompt_for(spread, "overall", other).system == prompts["overall"].system


def test_cache_breakpoints_go_on_the_parts_asked_for_with_their_ttl():
    spread = Spread.objects.get(slug="celtic_cross")
    prompt = prompt_for(
        spread, "advice", sample_context(spread), cache_ttls={GUIDE: "1h", RESULTS: "5m"}
    )
    request = prompt.request()

    assert request["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    content = request["messages"][0]["content"]
    assert [block.get("cache_control", {}).get("ttl") for block in content] == [None, "5m", None]


def test_a_batch_text_that_could_not_be_split_is_sent_once_under_all_its_cards():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)
    whole = "One answer about three cards, not split by position."
    context.card_results = [
        CardResult(position=d.position, card=d.card, orientation=d.orientation, text=whole)
        for d in context.cards[:3]
    ]

    text = prompt_for(spread, "overall", context).text

    assert text.count(whole) == 1
    first, second, third = (d.position.index for d in context.cards[:3])
    assert f"{first}, {second} and {third}, together: {whole}" in text


def test_each_card_result_is_headed_by_its_position_number_named_in_the_layout_above():
    spread = Spread.objects.get(slug="celtic_cross")
    context = sample_context(spread)

    prompt = prompt_for(spread, "overall", context)
    layout, results = prompt.user[0].text, prompt.user[1].text

    for drawn, result in zip(context.cards, context.card_results, strict=True):
        number = drawn.position.index
        assert f"{number}. {drawn.position.name}: {drawn.card.name}, {drawn.orientation}" in layout
        assert f"\n{number}: {result.text}" in results


@pytest.mark.parametrize("slug", ["three_card", "celtic_cross", "horoscope"])
def test_a_guide_carries_the_rules_of_the_steps_asked_for_and_what_all_steps_share(slug):
    spread = Spread.objects.get(slug=slug)
    names = template_names(spread, KINDS)
    context = sample_context(spread)

    whole = render_guide(names, context)
    card = render_guide(names, context, ("card",))

    assert "Step: card interpretations" in whole and "Step: advice" in whole
    assert "Step: card interpretations" in card and "Step: advice" not in card
    assert "Rules for every step:" in card
    assert all(p.meaning in card for p in spread.positions.all())
    assert len(card) < len(whole)


def test_a_template_stored_in_the_admin_overrides_the_file():
    PromptTemplate.objects.create(name="celtic_cross_advice.txt", body="Advise on: {{ question }}")
    context = sample_context(Spread.objects.get(slug="celtic_cross"))

    assert render_prompt("celtic_cross_advice.txt", context) == f"Advise on: {context.question}"
