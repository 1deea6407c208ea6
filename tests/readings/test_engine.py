"""The parallel engine, end to end against the emulator through the real anthropic SDK."""

import threading
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from allocation.models import CallOutcome, LLMCall, ModelAllocation
from readings.engine import run_reading_sync
from readings.models import ReadingStatus, ReadingTask, TaskStatus
from readings.services import reading_create
from spreads.models import Spread, TaskType

# The engine runs on its own thread and connection, so tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def read(spread="celtic_cross", question="Where is my career going?"):
    reading = reading_create(spread=spread, question=question)
    return run_reading_sync(reading.pk)


def tasks_of(reading, phase):
    return list(ReadingTask.objects.filter(reading=reading, phase=phase))


def test_it_interprets_celtic_cross_cards_in_batches_of_3_3_3_1(emulator):
    reading = read()

    card_tasks = ReadingTask.objects.filter(
        reading=reading, task_type=TaskType.CARD_INTERPRETATION
    ).order_by("batch_index")
    assert [t.position_indexes for t in card_tasks] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert reading.status == ReadingStatus.DONE


def test_it_finishes_every_batch_before_phase_2_and_phase_2_before_advice(emulator):
    reading = read()

    phase1, phase2, phase3 = (tasks_of(reading, p) for p in (1, 2, 3))
    assert max(t.finished_at for t in phase1) <= min(t.started_at for t in phase2)
    assert max(t.finished_at for t in phase2) <= min(t.started_at for t in phase3)
    assert [t.task_type for t in phase3] == [TaskType.ADVICE]


def test_it_runs_the_batches_of_a_phase_at_the_same_time(emulator):
    # Calls slow enough that all four batches are surely admitted before the first answers,
    # however long admission takes on a busy machine.
    emulator.configure(ttft_ms=500)
    reading = read()

    phase1 = tasks_of(reading, 1)
    assert max(t.started_at for t in phase1) < min(t.finished_at for t in phase1)
    assert reading.peak_concurrent_calls == 4
    assert emulator.stats()["peak_concurrency"] == 4


def test_it_never_exceeds_the_spreads_max_concurrent_calls(emulator):
    Spread.objects.filter(slug="celtic_cross").update(max_concurrent_calls=2)

    reading = read()

    assert reading.status == ReadingStatus.DONE
    assert emulator.stats()["peak_concurrency"] == 2


def test_it_makes_one_call_at_a_time_when_the_spread_does_not_support_parallel(emulator):
    Spread.objects.filter(slug="celtic_cross").update(supports_parallel=False)

    reading = read()

    assert reading.status == ReadingStatus.DONE
    assert emulator.stats()["peak_concurrency"] == 1
    assert reading.peak_concurrent_calls == 1


def test_it_saves_results_and_metrics_on_the_reading(emulator):
    reading = read()

    assert all(t.status == TaskStatus.DONE and t.output for t in reading.tasks.all())
    assert reading.calls == 7
    assert reading.wall_time_s > 0
    assert reading.sequential_s > reading.critical_path_s > 0
    assert reading.time_saved_s == pytest.approx(reading.sequential_s - reading.wall_time_s)
    assert reading.cost_usd == sum(c.cost_usd for c in LLMCall.objects.filter(reading=reading))
    assert reading.cost_usd > 0


def test_an_environment_override_beats_the_admin(emulator, monkeypatch):
    monkeypatch.setenv("CELTIC_CROSS_CARD_MODEL", "claude-haiku-4-5")

    reading = read()

    card_models = set(
        LLMCall.objects.filter(reading=reading, task_type=TaskType.CARD_INTERPRETATION).values_list(
            "model", flat=True
        )
    )
    assert card_models == {"claude-haiku-4-5"}
    assert emulator.stats()["by_model"]["claude-haiku-4-5"]["requests"] == 4


def test_an_admin_edit_takes_effect_on_the_next_reading(emulator):
    first = read()
    advice = ModelAllocation.objects.get(task_type=TaskType.ADVICE, spread=None)
    advice.model = "claude-haiku-4-5"
    advice.save()  # as the admin saves it

    second = read()

    assert first.tasks.get(task_type=TaskType.ADVICE).model_used == "claude-sonnet-5"
    assert second.tasks.get(task_type=TaskType.ADVICE).model_used == "claude-haiku-4-5"


def test_a_spread_allocation_overrides_the_global_one(emulator):
    ModelAllocation.objects.create(
        task_type=TaskType.OVERALL_READING,
        spread=Spread.objects.get(slug="three_card"),
        model="claude-opus-4-8",
        max_tokens=300,
        temperature=0.5,
    )

    reading = read("three_card")

    assert reading.tasks.get(task_type=TaskType.OVERALL_READING).model_used == "claude-opus-4-8"


def test_it_waits_out_a_429_and_counts_it(emulator):
    emulator.configure(force_429=1, retry_after_s=1)

    reading = read("three_card")

    assert reading.status == ReadingStatus.DONE
    assert reading.rate_limit_hits == 1
    limited = LLMCall.objects.get(reading=reading, outcome=CallOutcome.RATE_LIMITED)
    retry = LLMCall.objects.get(task=limited.task, outcome=CallOutcome.OK)
    assert retry.is_retry and retry.model == limited.model
    assert (retry.started_at - limited.started_at).total_seconds() >= 1.0


def test_an_overloaded_primary_model_is_retried_then_falls_back_and_the_log_shows_it(emulator):
    emulator.configure(overloaded_models=frozenset({"claude-haiku-5-5"}))

    reading = read("three_card")

    assert reading.status == ReadingStatus.DONE
    card_task = reading.tasks.get(task_type=TaskType.CARD_INTERPRETATION)
    calls = list(LLMCall.objects.filter(task=card_task).order_by("attempt"))
    # A 529 is transient: the same model is retried with backoff before the fallback.
    assert [(c.model, c.outcome, c.is_fallback) for c in calls] == [
        ("claude-haiku-5-5", CallOutcome.OVERLOADED, False),
        ("claude-haiku-5-5", CallOutcome.OVERLOADED, False),
        ("claude-haiku-5-5", CallOutcome.OVERLOADED, False),
        ("claude-haiku-4-5", CallOutcome.OK, True),
    ]
    assert calls[1].is_retry and calls[2].is_retry
    assert calls[3].requested_model == "claude-haiku-5-5"
    assert card_task.model_used == "claude-haiku-4-5"
    assert reading.fallbacks == 1


def test_a_fallback_dearer_than_the_allocations_cost_ceiling_is_never_called(emulator):
    # The seeded card fallback, claude-haiku-4-5, costs ten times claude-haiku-5-5.
    ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION, spread=None).update(
        fallback_cost_ceiling=Decimal("2.00"), overload_patience_s=0
    )
    emulator.configure(overloaded_models=frozenset({"claude-haiku-5-5"}))

    reading = read("three_card")

    assert reading.status == ReadingStatus.FAILED
    assert "fallback cost ceiling of 2.00x" in reading.error
    assert "claude-haiku-4-5: skipped, it would cost 10.00x" in reading.error
    models_called = set(LLMCall.objects.filter(reading=reading).values_list("model", flat=True))
    assert models_called == {"claude-haiku-5-5"}


def test_a_fallback_within_the_cost_ceiling_still_rescues_the_task(emulator):
    ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION, spread=None).update(
        fallback_cost_ceiling=Decimal("10.00")
    )
    emulator.configure(overloaded_models=frozenset({"claude-haiku-5-5"}))

    reading = read("three_card")

    assert reading.status == ReadingStatus.DONE
    assert reading.tasks.get(task_type=TaskType.CARD_INTERPRETATION).model_used == (
        "claude-haiku-4-5"
    )


def test_an_overload_shorter_than_the_allocations_patience_is_waited_out(emulator):
    ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION, spread=None).update(
        overload_patience_s=30
    )
    card_models = frozenset({"claude-haiku-5-5", "claude-haiku-4-5"})
    emulator.configure(overloaded_models=card_models)
    # The wave passes a moment after the reading has tried every card model.
    wave = threading.Timer(2.5, emulator.configure, kwargs={"overloaded_models": frozenset()})
    wave.start()
    try:
        reading = read("three_card")
    finally:
        wave.cancel()

    assert reading.status == ReadingStatus.DONE
    outcomes = list(
        LLMCall.objects.filter(reading=reading, task_type=TaskType.CARD_INTERPRETATION)
        .order_by("started_at")
        .values_list("model", "outcome")
    )
    assert {model for model, _ in outcomes[:-1]} == card_models  # every model, overloaded
    assert {outcome for _, outcome in outcomes[:-1]} == {CallOutcome.OVERLOADED}
    assert outcomes[-1][1] == CallOutcome.OK


def test_a_task_fails_once_its_patience_with_an_overload_is_spent(emulator):
    ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION, spread=None).update(
        overload_patience_s=4
    )
    emulator.configure(overloaded_models=frozenset({"claude-haiku-5-5", "claude-haiku-4-5"}))

    reading = read("three_card")

    assert reading.status == ReadingStatus.FAILED
    assert "waited out 4 s of overload" in reading.error
    card_calls = LLMCall.objects.filter(reading=reading, task_type=TaskType.CARD_INTERPRETATION)
    # More than one round of both models (three attempts each), not one round and done.
    assert card_calls.count() > 6


def test_a_model_that_always_fails_ends_the_reading_failed_and_keeps_finished_work(emulator):
    ModelAllocation.objects.filter(task_type=TaskType.ADVICE, spread=None).update(
        model="claude-opus-4-1", fallback_models="claude-3-haiku-20240307"
    )
    emulator.configure(failing_models=frozenset({"claude-opus-4-1", "claude-3-haiku-20240307"}))

    reading = read("three_card")

    assert reading.status == ReadingStatus.FAILED
    assert "Advice" in reading.error and "claude-3-haiku-20240307" in reading.error
    finished = reading.tasks.filter(status=TaskStatus.DONE)
    assert finished.count() == 3
    assert all(t.output for t in finished)
    assert reading.tasks.get(task_type=TaskType.ADVICE).status == TaskStatus.FAILED


def test_an_unpriceable_environment_override_fails_the_reading_with_a_clear_error(
    emulator, monkeypatch
):
    monkeypatch.setenv("THREE_CARD_CARD_MODEL", "claude-haiku-20240307")

    reading = read("three_card")

    assert reading.status == ReadingStatus.FAILED
    assert "No price is known for 'claude-haiku-20240307'" in reading.error
    assert LLMCall.objects.filter(reading=reading).count() == 0


def test_a_logged_calls_cost_equals_genai_prices_figure_for_its_usage(emulator):
    reading = read("three_card")

    for call in LLMCall.objects.filter(reading=reading):
        expected = calc_price(
            Usage(
                input_tokens=call.input_tokens + call.cache_read_tokens + call.cache_write_tokens,
                output_tokens=call.output_tokens,
                cache_read_tokens=call.cache_read_tokens,
                cache_write_tokens=call.cache_write_tokens,
            ),
            model_ref=call.model,
            provider_id="anthropic",
        ).total_price
        assert call.cost_usd == Decimal(expected).quantize(Decimal("0.00000001"))
        assert call.cost_usd > 0


def test_it_reuses_pooled_connections_across_readings(emulator):
    read("three_card")
    read("three_card")

    stats = emulator.stats()
    assert stats["requests"] == 2 * 4
    assert stats["connections_opened"] <= stats["peak_concurrency"] + 2


def test_it_does_not_run_a_finished_reading_again(emulator):
    reading = read("three_card")
    calls_before = emulator.stats()["requests"]

    again = run_reading_sync(reading.pk)

    assert again.status == ReadingStatus.DONE
    assert emulator.stats()["requests"] == calls_before
