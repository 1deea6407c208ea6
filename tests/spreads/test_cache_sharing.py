"""Staff see where a spread's model allocation breaks prompt-cache sharing, and what it costs.

Token counts are pinned (the real ones come from the spread's rendered templates) and the
models carry price overrides, so the money in each warning is worked out by hand:
test-sonnet reads the cache at $0.30 instead of $3 input (USD per million tokens), test-haiku
at $0.10 instead of $1.
"""

from decimal import Decimal

import pytest
from django.utils import timezone

from allocation.models import CacheTTL, CallOutcome, ModelAllocation, ModelPrice
from spreads import cache_sharing
from spreads.cache_sharing import shared_part_tokens, sharing_problems
from spreads.models import Spread, TaskType
from spreads.prompts import GUIDE, LAYOUT, RESULTS
from tests.reports import make_call

pytestmark = pytest.mark.django_db

LONG = {GUIDE: 5000, LAYOUT: 1000, RESULTS: 500}


@pytest.fixture(autouse=True)
def prices():
    for model, (input_rate, read_rate) in {
        "test-sonnet": ("3", "0.30"),
        "test-haiku": ("1", "0.10"),
    }.items():
        ModelPrice.objects.create(
            model=model,
            input_per_mtok=Decimal(input_rate),
            output_per_mtok=Decimal(input_rate) * 5,
            cache_read_per_mtok=Decimal(read_rate),
            cache_write_per_mtok=Decimal(input_rate) * Decimal("1.25"),
            cache_write_1h_per_mtok=Decimal(input_rate) * 2,
        )


@pytest.fixture
def spread():
    return Spread.objects.get(slug="celtic_cross")


def allocate(**models):
    for task_type, model in models.items():
        ModelAllocation.objects.filter(spread=None, task_type=task_type).update(model=model)


def pin_tokens(monkeypatch, tokens):
    monkeypatch.setattr(cache_sharing, "shared_part_tokens", lambda spread: dict(tokens))
    monkeypatch.setattr(
        cache_sharing,
        "guide_tokens_by_model",
        lambda spread, calls: {call.model: tokens[GUIDE] for call in calls},
    )


def test_one_model_for_every_task_shares_everything(spread, monkeypatch):
    pin_tokens(monkeypatch, LONG)
    allocate(**{task_type: "test-sonnet" for task_type in TaskType.values})

    assert sharing_problems(spread) == []


def test_advice_on_its_own_model_reads_none_of_the_earlier_caches_and_says_what_it_costs(
    spread, monkeypatch
):
    pin_tokens(monkeypatch, LONG)
    allocate(
        card_interpretation="test-sonnet",
        overall_reading="test-sonnet",
        relationships="test-sonnet",
        advice="test-haiku",
    )

    [advice] = sharing_problems(spread)[:1]

    # 1,000 layout + 500 card results tokens at $1 input instead of $0.10 cache reads:
    # 1,500 x 0.90 / 1,000,000 = $0.00135 a reading.
    assert advice == (
        "Advice on test-haiku cannot read the layout the card interpretations cached on "
        "test-sonnet, nor the layout and card results the overall reading cached on "
        "test-sonnet, nor the layout and card results the relationships reading cached on "
        "test-sonnet: it sends the layout and card results (about 1,500 tokens) at the full "
        "input price every reading, about $0.00135 more than cache reads would cost."
    )


def test_advice_that_still_reads_a_same_model_cache_costs_nothing_more(spread, monkeypatch):
    # The seeded split: the overall reading on a model of its own.
    pin_tokens(monkeypatch, LONG)
    allocate(
        card_interpretation="test-sonnet",
        overall_reading="test-haiku",
        relationships="test-sonnet",
        advice="test-sonnet",
    )

    problems = sharing_problems(spread)

    assert (
        "Advice on test-sonnet cannot read the layout and card results the overall reading "
        "cached on test-haiku; it reads the layout and card results from the card "
        "interpretations and the relationships reading on test-sonnet instead, so this costs "
        "nothing more."
    ) in problems
    # The overall reading itself reads the layout at $1 instead of $0.10: 1,000 x 0.90.
    assert (
        "Overall reading on test-haiku cannot read the layout the card interpretations cached "
        "on test-sonnet: it sends the layout (about 1,000 tokens) at the full input price "
        "every reading, about $0.0009 more than cache reads would cost."
    ) in problems


def test_each_model_keeps_its_own_copy_of_the_guide(spread, monkeypatch):
    pin_tokens(monkeypatch, LONG)
    allocate(
        card_interpretation="test-haiku",
        overall_reading="test-sonnet",
        relationships="test-sonnet",
        advice="test-sonnet",
    )

    assert (
        "The guide is cached apart on each of the 2 models (the card interpretations on "
        "test-haiku; the overall reading and the relationships reading and the advice on "
        "test-sonnet): every model writes, and pays the write premium for, its own copy, "
        "and one model's calls cannot read another's."
    ) in sharing_problems(spread)


def test_it_warns_when_a_cached_prefix_is_below_the_models_minimum(spread, monkeypatch):
    # Haiku models cache nothing shorter than 4,096 tokens (spreads/prompt_caching.py).
    pin_tokens(monkeypatch, {GUIDE: 800, LAYOUT: 100, RESULTS: 100})
    allocate(**{task_type: "claude-haiku-5-5" for task_type in TaskType.values})

    problems = sharing_problems(spread)

    assert (
        "On claude-haiku-5-5 the prompt up to the end of the guide (the guide, about 800 "
        "tokens) is shorter than the model's minimum cacheable prompt (4,096 tokens): the card "
        "interpretations and the overall reading and the relationships reading and the advice "
        "cannot cache it there, so it is sent as plain input on every call."
    ) in problems
    assert any("up to the end of the card results" in problem for problem in problems)


def test_no_sharing_warnings_when_the_spread_does_not_cache_its_readings(spread, monkeypatch):
    pin_tokens(monkeypatch, LONG)
    spread.reading_cache_ttl = CacheTTL.OFF
    spread.guide_cache_ttl = CacheTTL.OFF
    allocate(advice="test-haiku")

    assert sharing_problems(spread) == []


def test_the_card_results_are_sized_from_the_card_calls_answers(spread):
    before = shared_part_tokens(spread)[RESULTS]
    # A reading's card results are every batch's answer: 200 and 400 tokens average 300.
    for tokens in (200, 400):
        make_call(
            timezone.now(),
            task_type=TaskType.CARD_INTERPRETATION,
            spread=spread,
            output_tokens=tokens,
        )
    # A failed attempt wrote no card result.
    make_call(timezone.now(), spread=spread, outcome=CallOutcome.TIMEOUT, output_tokens=0)
    batches = -(-spread.card_count // spread.batch_size)

    assert shared_part_tokens(spread)[RESULTS] == before + 300 * batches


def test_the_spread_admin_shows_where_models_break_sharing(staff_client, spread, monkeypatch):
    pin_tokens(monkeypatch, LONG)
    allocate(advice="test-haiku")

    page = staff_client.get(f"/admin/spreads/spread/{spread.pk}/change/").content.decode()

    assert "Prompt cache sharing" in page
    assert "Advice on test-haiku cannot read the layout" in page


def test_the_spread_admin_says_when_there_is_nothing_to_warn_about(
    staff_client, spread, monkeypatch
):
    pin_tokens(monkeypatch, LONG)
    allocate(**{task_type: "test-sonnet" for task_type in TaskType.values})

    page = staff_client.get(f"/admin/spreads/spread/{spread.pk}/change/").content.decode()

    assert "Nothing to warn about" in page
