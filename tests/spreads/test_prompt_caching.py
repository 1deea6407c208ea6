"""Which parts of a reading's prompts carry a cache breakpoint, and whose rules the guide
carries, on the seeded allocation's shape: the card batches on a Haiku, the overall reading
alone on one Sonnet, relationships and advice together on another."""

import pytest

from allocation.models import CacheTTL, LLMCall
from readings import store, task_runner
from readings.engine import run_reading_sync
from readings.services import reading_create
from spreads.models import TaskType
from spreads.prompt_caching import PlannedCall, cache_ttls, guide_steps
from spreads.prompts import GUIDE, LAYOUT, RESULTS, STEPS

HAIKU, SONNET, SONNET_55 = "claude-haiku-5-5", "claude-sonnet-5", "claude-sonnet-5-5"
SEEDED = [
    PlannedCall(TaskType.CARD_INTERPRETATION, 1, HAIKU),
    PlannedCall(TaskType.OVERALL_READING, 2, SONNET_55),
    PlannedCall(TaskType.RELATIONSHIPS, 2, SONNET),
    PlannedCall(TaskType.ADVICE, 3, SONNET),
]


def call(task_type, calls=SEEDED):
    return next(c for c in calls if c.task_type == task_type)


def ttls(task_type, calls=SEEDED, **kwargs):
    kwargs = {"guide_ttl": CacheTTL.ONE_HOUR, "reading_ttl": CacheTTL.FIVE_MINUTES, **kwargs}
    return cache_ttls(call(task_type, calls), calls, **kwargs)


def test_relationships_writes_the_layout_and_card_results_that_advice_reads():
    for task_type in (TaskType.RELATIONSHIPS, TaskType.ADVICE):
        assert ttls(task_type) == {LAYOUT: "5m", RESULTS: "5m", GUIDE: "1h"}


def test_a_call_alone_on_its_model_marks_only_the_guide_shared_across_readings():
    assert ttls(TaskType.OVERALL_READING) == {GUIDE: "1h"}
    assert ttls(TaskType.CARD_INTERPRETATION) == {GUIDE: "1h"}


def test_an_hour_long_write_read_once_is_not_made():
    # An hour's write costs 1.0 more than input, one read saves 0.9: it would lose money.
    # Economy readings keep their reading parts for an hour (the next batch may be that far).
    assert ttls(TaskType.RELATIONSHIPS, economy=True) == {GUIDE: "1h"}
    assert ttls(TaskType.ADVICE, reading_ttl=CacheTTL.ONE_HOUR) == {GUIDE: "1h"}


def test_an_hour_long_write_read_twice_is_made():
    one_model = [PlannedCall(c.task_type, c.phase, SONNET) for c in SEEDED]

    card = ttls(TaskType.CARD_INTERPRETATION, one_model, economy=True)

    # The cards' layout is read by phases 2 and 3; the card results by advice alone.
    assert card == {LAYOUT: "1h", GUIDE: "1h"}
    assert ttls(TaskType.RELATIONSHIPS, one_model, economy=True) == {LAYOUT: "1h", GUIDE: "1h"}


def test_nothing_is_marked_with_caching_off():
    assert ttls(TaskType.RELATIONSHIPS, enabled=False) == {}


def sizes(full, per_step=0):
    """A guide of `full` tokens whose step sections take `per_step` tokens each."""
    return lambda steps: full - per_step * (len(STEPS) - len(steps))


def test_the_guide_on_a_model_carries_the_steps_that_model_runs():
    def steps(task_type):
        return guide_steps(call(task_type), SEEDED, guide_tokens=sizes(3000, 100))

    assert steps(TaskType.CARD_INTERPRETATION) == ("card",)
    assert steps(TaskType.OVERALL_READING) == ("overall",)
    # One guide for both, so advice reads the prefix relationships wrote.
    assert steps(TaskType.RELATIONSHIPS) == steps(TaskType.ADVICE) == ("relationships", "advice")


def test_a_guide_that_caches_whole_is_not_cut_below_the_models_minimum():
    # Sonnets cache prompts of 1,024 tokens or more: 1,100 caches, 1,100 - 3 x 100 does not.
    overall = call(TaskType.OVERALL_READING)

    assert guide_steps(overall, SEEDED, guide_tokens=sizes(1100, 100)) == STEPS
    # Too short to cache whole as well: then the shorter the better.
    assert guide_steps(overall, SEEDED, guide_tokens=sizes(900, 100)) == ("overall",)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_prompts_send_each_model_only_the_rules_of_its_steps():
    reading = reading_create(spread="celtic_cross", question="Where is my career going?")
    state = store.begin(reading.pk)
    guide = {
        task.task_type: task_runner.prompt_for(state, task).system[0].text for task in state.tasks
    }

    assert "Step: card interpretations" in guide[TaskType.CARD_INTERPRETATION]
    assert "Step: advice" not in guide[TaskType.CARD_INTERPRETATION]
    assert "Step: the overall reading" in guide[TaskType.OVERALL_READING]
    assert "Step: card interpretations" not in guide[TaskType.OVERALL_READING]
    assert guide[TaskType.RELATIONSHIPS] == guide[TaskType.ADVICE]
    assert "Step: how the cards relate" in guide[TaskType.ADVICE]
    # Every guide keeps what all steps share: the positions and the rules for every step.
    for text in guide.values():
        assert "The Challenge" in text and "Rules for every step:" in text


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_in_a_real_reading_advice_reads_what_relationships_wrote(emulator):
    reading = run_reading_sync(
        reading_create(spread="celtic_cross", question="Where is my career going?").pk
    )
    calls = {c.task_type: c for c in LLMCall.objects.filter(reading=reading)}
    relationships, advice = calls[TaskType.RELATIONSHIPS], calls[TaskType.ADVICE]

    assert relationships.cache_write_5m_tokens > 0
    # Advice reads the guide and everything relationships cached after it.
    assert advice.cache_read_tokens == (
        relationships.cache_read_tokens + relationships.cache_write_tokens
    )
    assert advice.cache_write_tokens == 0
