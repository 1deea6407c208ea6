"""Which model does a task: environment > spread allocation > global allocation > default,
field by field, read afresh for every reading."""

import logging
from decimal import Decimal

import pytest

from allocation import staff_config
from allocation.allocator import AllocationError, Layer, get_allocator
from allocation.models import ModelAllocation
from spreads.models import Spread, TaskType

pytestmark = pytest.mark.django_db


@pytest.fixture
def celtic_cross():
    return Spread.objects.get(slug="celtic_cross")


def config(task_type=TaskType.CARD_INTERPRETATION, spread=None):
    return get_allocator().get_config(task_type, spread=spread)


def test_it_uses_the_global_allocation_when_nothing_else_is_set(celtic_cross):
    card = config(spread=celtic_cross)

    assert card.model == "claude-haiku-5-5"
    assert card.fallbacks == ("claude-haiku-4-5",)
    assert card.sources == {
        **dict.fromkeys(["model", "max_tokens", "temperature", "fallbacks"], Layer.GLOBAL),
        # The seed sets no ceiling: no layer has an opinion.
        "fallback_cost_ceiling": Layer.DEFAULT,
    }


def test_a_spread_allocation_beats_the_global_one(celtic_cross):
    ModelAllocation.objects.create(
        task_type=TaskType.CARD_INTERPRETATION,
        spread=celtic_cross,
        model="claude-sonnet-5",
        max_tokens=700,
        temperature=0.4,
    )

    card = config(spread=celtic_cross)

    assert (card.model, card.max_tokens, card.temperature) == ("claude-sonnet-5", 700, 0.4)
    assert card.sources["model"] == Layer.SPREAD
    assert config(spread=Spread.objects.get(slug="horoscope")).model == "claude-haiku-5-5"


def test_the_environment_beats_the_spread_field_by_field(celtic_cross, monkeypatch):
    ModelAllocation.objects.create(
        task_type=TaskType.OVERALL_READING,
        spread=celtic_cross,
        model="claude-sonnet-5",
        max_tokens=900,
        temperature=0.5,
    )
    monkeypatch.setenv("CELTIC_CROSS_OVERALL_MODEL", "claude-opus-4-8")
    monkeypatch.setenv("CELTIC_CROSS_OVERALL_TEMPERATURE", "0.2")

    overall = config(TaskType.OVERALL_READING, celtic_cross)

    assert (overall.model, overall.temperature, overall.max_tokens) == (
        "claude-opus-4-8",
        0.2,
        900,
    )
    assert overall.sources == {
        "model": Layer.ENVIRONMENT,
        "temperature": Layer.ENVIRONMENT,
        "max_tokens": Layer.SPREAD,
        # A spread allocation states its whole fallback list, even an empty one.
        "fallbacks": Layer.SPREAD,
        "fallback_cost_ceiling": Layer.DEFAULT,
    }


def test_a_fallback_cost_ceiling_comes_from_the_spread_then_the_global_allocation(celtic_cross):
    assert config(spread=celtic_cross).fallback_cost_ceiling is None  # the seed sets none
    card = ModelAllocation.objects.get(task_type=TaskType.CARD_INTERPRETATION, spread=None)
    card.fallback_cost_ceiling = Decimal("1.50")
    card.save()
    assert config(spread=celtic_cross).fallback_cost_ceiling == Decimal("1.50")

    ModelAllocation.objects.create(
        task_type=TaskType.CARD_INTERPRETATION,
        spread=celtic_cross,
        model="claude-haiku-5-5",
        fallback_models="claude-haiku-4-5",
        fallback_cost_ceiling=Decimal("12"),
    )
    card = config(spread=celtic_cross)
    assert (card.fallback_cost_ceiling, card.sources["fallback_cost_ceiling"]) == (
        Decimal("12"),
        Layer.SPREAD,
    )


def test_the_environment_can_set_the_fallback_cost_ceiling(celtic_cross, monkeypatch):
    monkeypatch.setenv("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", "2.5")

    card = config(spread=celtic_cross)

    assert card.fallback_cost_ceiling == Decimal("2.5")
    assert card.sources["fallback_cost_ceiling"] == Layer.ENVIRONMENT


@pytest.mark.parametrize("raw", ["cheap", "0", "-1", "NaN"])
def test_a_bad_fallback_cost_ceiling_in_the_environment_is_named(celtic_cross, monkeypatch, raw):
    monkeypatch.setenv("CELTIC_CROSS_CARD_FALLBACK_COST_CEILING", raw)

    with pytest.raises(AllocationError, match="CELTIC_CROSS_CARD_FALLBACK_COST_CEILING"):
        config(spread=celtic_cross)


def test_the_environment_override_names_the_spread(celtic_cross, monkeypatch):
    monkeypatch.setenv("HOROSCOPE_CARD_MODEL", "claude-opus-4-8")

    assert config(spread=celtic_cross).model == "claude-haiku-5-5"


def test_it_falls_back_to_the_built_in_default_without_any_allocation(celtic_cross):
    ModelAllocation.objects.all().delete()

    advice = config(TaskType.ADVICE, celtic_cross)

    assert advice.model == TaskType.ADVICE.builtin_default.model
    assert set(advice.sources.values()) == {Layer.DEFAULT}


def test_the_spreads_max_tokens_caps_every_allocation(celtic_cross):
    Spread.objects.filter(pk=celtic_cross.pk).update(max_tokens=256)
    celtic_cross.refresh_from_db()

    assert config(TaskType.OVERALL_READING, celtic_cross).max_tokens == 256


def test_an_admin_edit_applies_to_the_next_lookup_without_a_restart(celtic_cross):
    assert config(spread=celtic_cross).model == "claude-haiku-5-5"
    for row in ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION):
        row.model = "claude-haiku-4-5"
        row.save()  # as the admin saves it

    assert config(spread=celtic_cross).model == "claude-haiku-4-5"


def test_a_bulk_update_applies_once_this_process_reads_the_rows_again(celtic_cross):
    assert config(spread=celtic_cross).model == "claude-haiku-5-5"
    # A bulk update sends no signal: this process keeps the rows it read...
    ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION).update(
        model="claude-haiku-4-5"
    )
    assert config(spread=celtic_cross).model == "claude-haiku-5-5"

    # ...for at most staff_config.FRESH_S.
    staff_config.forget_all()
    assert config(spread=celtic_cross).model == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CELTIC_CROSS_CARD_MAX_TOKENS", "lots", "is not a whole number"),
        ("CELTIC_CROSS_CARD_MAX_TOKENS", "0", "must be at least 1"),
        ("CELTIC_CROSS_CARD_TEMPERATURE", "1.5", "must be between 0 and 1"),
        ("CELTIC_CROSS_CARD_MODEL", "claude-haiku-20240307", "No price is known"),
        ("CELTIC_CROSS_CARD_FALLBACK_MODELS", "claude-imaginary-9", "No price is known"),
    ],
)
def test_a_malformed_environment_override_is_a_clear_error(
    celtic_cross, monkeypatch, name, value, message
):
    monkeypatch.setenv(name, value)

    with pytest.raises(AllocationError, match=message):
        config(spread=celtic_cross)


def test_the_spreads_max_concurrent_calls_can_come_from_the_environment(celtic_cross, monkeypatch):
    assert get_allocator().max_concurrent_calls(celtic_cross) == 5
    monkeypatch.setenv("CELTIC_CROSS_MAX_CONCURRENT_CALLS", "2")

    assert get_allocator().max_concurrent_calls(celtic_cross) == 2


def test_it_logs_each_allocation_with_the_layer_it_came_from(celtic_cross, monkeypatch, caplog):
    monkeypatch.setenv("CELTIC_CROSS_CARD_MODEL", "claude-haiku-4-5")

    with caplog.at_level(logging.INFO, logger="allocation.allocator"):
        config(spread=celtic_cross)

    assert "model=claude-haiku-4-5 (environment)" in caplog.text
    assert "max_tokens=1024 (global)" in caplog.text


def test_an_allocation_is_logged_again_when_it_changes_not_for_every_reading(
    celtic_cross, monkeypatch, caplog
):
    config(spread=celtic_cross)

    with caplog.at_level(logging.INFO, logger="allocation.allocator"):
        caplog.clear()
        config(spread=celtic_cross)
        assert caplog.text == "", "the same allocation, resolved again, is not logged again"

        monkeypatch.setenv("CELTIC_CROSS_CARD_MAX_TOKENS", "700")
        config(spread=celtic_cross)

    assert "max_tokens=700 (environment)" in caplog.text


def test_overload_patience_comes_from_the_spread_then_the_global_allocation(celtic_cross):
    assert config(spread=celtic_cross).overload_patience_s == 60  # the default
    card = ModelAllocation.objects.get(task_type=TaskType.CARD_INTERPRETATION, spread=None)
    card.overload_patience_s = 20
    card.save()
    assert config(spread=celtic_cross).overload_patience_s == 20

    ModelAllocation.objects.create(
        task_type=TaskType.CARD_INTERPRETATION,
        spread=celtic_cross,
        model="claude-haiku-5-5",
        overload_patience_s=0,
    )
    assert config(spread=celtic_cross).overload_patience_s == 0
