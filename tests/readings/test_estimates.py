"""The expected cost given at creation, against what readings really cost on the emulator.

Readings run for real (engine, SDK, emulator, prompt cache); history is what those readings
leave behind, nothing is faked."""

from decimal import Decimal

import pytest

from allocation.models import CallOutcome, LLMCall
from readings import economy
from readings.engine import run_reading_sync
from readings.estimates import History, estimate_reading
from readings.models import EstimateSample, Reading, ReadingStatus, ReadingTask
from readings.services import reading_create
from spreads.models import PromptTemplate, TaskType
from spreads.prompts import DrawnCard
from tests.polling import wait_for

# The engine runs on its own thread and connection, so tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

QUESTION = "What do I need to understand about the year ahead?"


@pytest.fixture(autouse=True)
def steady_answers(emulator):
    """Answers of 200 to 240 tokens, not the emulator's 120 to 320: what is checked here is
    how a reading's calls are priced, not how much a handful of readings vary by chance."""
    emulator.configure(output_tokens_min=200, output_tokens_max=240)


def run(count, *, language="en", mode="standard") -> list[Reading]:
    readings = [
        reading_create(spread="celtic_cross", question=QUESTION, language=language, mode=mode)
        for _ in range(count)
    ]
    if mode == "economy":
        for reading in readings:
            economy.start(reading.pk)

        def all_ended():
            economy.tick()
            return not Reading.objects.filter(
                pk__in=[r.pk for r in readings], finished_at__isnull=True
            ).exists()

        wait_for(all_ended, timeout=60, what="the economy readings to end")
    else:
        for reading in readings:
            run_reading_sync(reading.pk)
    # What the estimator read a moment ago is kept for a while: read what these left.
    History.forget()
    done = list(Reading.objects.filter(pk__in=[r.pk for r in readings]))
    assert all(r.status == ReadingStatus.DONE for r in done)
    return done


def error_of(readings) -> float:
    """How far the expected costs given at creation were from the real ones, in all."""
    actual = sum(r.cost_usd for r in readings)
    expected = sum(r.cost_estimate.expected_usd for r in readings)
    return float(abs(actual - expected) / actual)


def mean_error_of(readings) -> float:
    """The bench's figure: the mean of each reading's own error."""
    errors = [abs(r.cost_usd - r.cost_estimate.expected_usd) / r.cost_usd for r in readings]
    return float(sum(errors) / len(errors))


def test_an_estimate_with_history_is_within_10_percent_of_the_readings_real_cost(emulator):
    # Enough history that the emulator's spread of answer lengths (120 to 320 tokens) averages
    # out, as a day's traffic does.
    run(8)

    measured = run(6)

    assert all(
        s["output_source"] == "history" for r in measured for s in r.cost_estimate.sources.values()
    )
    assert error_of(measured) <= 0.10
    assert mean_error_of(measured) <= 0.15


def test_the_estimate_prices_the_prompt_cache_as_the_provider_charges_it(emulator):
    # What relationships writes holds the card answers, whose length varies from reading to
    # reading: enough readings that it averages out.
    run(8)

    measured = run(5)

    # Each later task reads the guide (and advice the card results relationships wrote):
    # priced as plain input, the estimate was a third too high.
    expected = {"read": 0, "written": 0}
    counted = {"read": 0, "written": 0}
    for reading in measured:
        sources = reading.cost_estimate.sources
        for task in ReadingTask.objects.filter(reading=reading).exclude(phase=1):
            call = LLMCall.objects.get(task=task, outcome=CallOutcome.OK)
            source = sources[f"{task.task_type}:{task.batch_index}"]
            expected["read"] += source["cache_read_tokens"]
            expected["written"] += source["cache_write_tokens"]
            counted["read"] += call.cache_read_tokens
            counted["written"] += call.cache_write_tokens
    assert counted["read"] > 0 and counted["written"] > 0
    assert expected["read"] == pytest.approx(counted["read"], rel=0.10)
    assert expected["written"] == pytest.approx(counted["written"], rel=0.15)


def test_the_worst_case_stays_above_what_each_task_really_cost(emulator):
    run(2)
    (reading,) = run(1)

    estimate = estimate_reading(
        spread=reading.spread,
        question=reading.question,
        cards=[
            DrawnCard(position=d.position, card=d.card, reversed=d.reversed)
            for d in reading.drawn_cards.select_related("position", "card").order_by(
                "position__index"
            )
        ],
    )
    worst = {(t.task_type, t.batch_index): t.worst_case_usd for t in estimate.tasks}
    for task in ReadingTask.objects.filter(reading=reading):
        assert task.cost_usd < worst[(task.task_type, task.batch_index)]
    assert estimate.worst_case_usd == reading.cost_estimate.worst_case_usd


def test_korean_and_economy_history_do_not_skew_an_english_standard_estimate(emulator):
    emulator.configure(batch_delay_s=0.1)
    economy._clients.clear()
    run(6, language="ko")
    run(8, mode="economy")

    english = run(4)
    korean = run(4, language="ko")

    assert error_of(english) <= 0.10
    assert error_of(korean) <= 0.10
    # The Korean prompts are kept apart from the English ones.
    keys = {lang: set() for lang in ("en", "ko")}
    for sample in EstimateSample.objects.all():
        keys[sample.language].add(sample.key)
    assert keys["en"] and keys["ko"] and not keys["en"] & keys["ko"]


LONG_ADVICE = (
    "Step: advice. Before advising, restate the whole reading card by card.\n"
    + "Take your time and be thorough in everything you write for the querent here. " * 60
)


def test_a_template_change_does_not_let_old_history_skew_the_estimate(emulator):
    # History of a much longer advice prompt than the spread's own...
    PromptTemplate.objects.create(name="celtic_cross_advice.txt", body=LONG_ADVICE)
    run(3)
    PromptTemplate.objects.filter(name="celtic_cross_advice.txt").delete()

    # ...says nothing of the advice the spread sends now.
    (reading,) = run(1)

    advice = reading.cost_estimate.sources[f"{TaskType.ADVICE}:0"]
    call = LLMCall.objects.get(task__reading=reading, task_type=TaskType.ADVICE, outcome="ok")
    sent = call.input_tokens + call.cache_read_tokens + call.cache_write_tokens
    assert advice["output_source"] == "max_tokens share"
    assert advice["input_tokens"] == pytest.approx(sent, rel=0.10)
    # The other tasks send what they sent before, and keep what they learned.
    others = [s for k, s in reading.cost_estimate.sources.items() if not k.startswith("advice")]
    assert all(s["output_source"] == "history" for s in others)
    assert reading.cost_usd > 0 and reading.cost_estimate.expected_usd > Decimal(0)


def test_each_prompt_key_keeps_only_its_newest_samples(emulator, monkeypatch):
    from readings import estimate_history

    monkeypatch.setattr(estimate_history, "HISTORY_CALLS", 2)
    monkeypatch.setattr(estimate_history, "PRUNE_EVERY", 1)
    run(3)

    by_key: dict[str, list[int]] = {}
    for key, pk in EstimateSample.objects.order_by("id").values_list("key", "pk"):
        by_key.setdefault(key, []).append(pk)
    assert by_key and all(len(pks) == 2 for pks in by_key.values())
    newest = EstimateSample.objects.order_by("-id").first()
    assert newest.pk in by_key[newest.key]


def test_older_samples_wait_for_the_next_prune_not_each_reading(emulator, monkeypatch):
    from readings import estimate_history

    monkeypatch.setattr(estimate_history, "HISTORY_CALLS", 1)
    monkeypatch.setattr(estimate_history, "PRUNE_EVERY", 10_000)
    monkeypatch.setattr(estimate_history, "_added_since_prune", 0)
    run(2)
    assert EstimateSample.objects.values("key").distinct().count() < EstimateSample.objects.count()

    estimate_history.prune()

    assert EstimateSample.objects.values("key").distinct().count() == EstimateSample.objects.count()
