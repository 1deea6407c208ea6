"""What the estimator learns from: one sample per finished task, under its prompt key.

When a reading is done, each of its tasks answered on the allocated model gives a sample:
the prompt key and prompt tokens its estimate gave it (CostEstimate.sources, written at
creation), what the provider counted as its whole input, the earlier answers it quoted and
its own answer. Only samples of the same key (the same prompt, model and language: see
readings/estimates.py) inform an estimate, so history of an older template, another
allocation or another language never skews it; standard, economy and uncached calls of one
prompt send the same tokens, and all count.
"""

import logging
import statistics
from dataclasses import dataclass

from django.db.models import F, Subquery, Window
from django.db.models.functions import RowNumber

from allocation.models import CallOutcome, LLMCall
from readings.models import EstimateSample, Reading, ReadingStatus
from spreads.models import TaskType

log = logging.getLogger(__name__)

# How many recent samples of a key make its history: enough for a stable mean, recent
# enough to follow a change in the model's answers within a day's traffic.
HISTORY_CALLS = 200
# Older samples are deleted every this many samples a process adds, not after every reading:
# the delete ranks each key's samples, which cost a busy worker more than the reading's own
# learning. A key holds at most HISTORY_CALLS + PRUNE_EVERY samples per process adding them.
PRUNE_EVERY = 100
_added_since_prune = 0

# Which earlier task types' answers a task's prompt quotes.
FEEDS = {
    TaskType.CARD_INTERPRETATION: (),
    TaskType.OVERALL_READING: (TaskType.CARD_INTERPRETATION,),
    TaskType.RELATIONSHIPS: (TaskType.CARD_INTERPRETATION,),
    TaskType.ADVICE: (
        TaskType.CARD_INTERPRETATION,
        TaskType.OVERALL_READING,
        TaskType.RELATIONSHIPS,
    ),
}


def task_key(task_type: str, batch_index: int) -> str:
    """How a task is named in an estimate's sources: "card_interpretation:2"."""
    return f"{task_type}:{batch_index}"


@dataclass(frozen=True)
class Learned:
    """What a key's samples say; None where there are none."""

    input_ratio: float | None  # provider-counted over estimated prompt tokens
    # The mean answer: what a reading costs is linear in it, so the mean is what its expected
    # cost needs (a median would miss a skewed distribution's tail).
    output_tokens: int | None


NOTHING_LEARNED = Learned(None, None)


def learned(keys: list[str]) -> dict[str, Learned]:
    """Each key's recent samples, summarised, in one query."""
    rows: dict[str, list[tuple[int, int, int, int]]] = {}
    for key, prompt, quoted, counted, output in (
        EstimateSample.objects.filter(key__in=set(keys))
        .order_by("-id")
        .values_list("key", "prompt_tokens", "quoted_tokens", "input_tokens", "output_tokens")
    ):
        if len(rows.setdefault(key, [])) < HISTORY_CALLS:
            rows[key].append((prompt, quoted, counted, output))
    found = {}
    for key, samples in rows.items():
        ratios = [max(0, counted - quoted) / prompt for prompt, quoted, counted, _ in samples]
        found[key] = Learned(
            input_ratio=statistics.median(ratios),
            output_tokens=round(statistics.fmean(output for *_, output in samples)),
        )
    return found


def record_reading(reading_id) -> int:
    """Add the samples of a done reading; returns how many. A reading with no estimate, or
    an estimate made before prompt keys, teaches nothing."""
    found = (
        Reading.objects.filter(pk=reading_id, status=ReadingStatus.DONE)
        .values_list("language", "cost_estimate__sources")
        .first()
    )
    if found is None or not found[1]:
        return 0
    language, sources = found
    # The call that answered each task: the last successful one (a retry after an invalid
    # answer logs an earlier one too).
    answered: dict[tuple[str, int], tuple] = {}
    for task_type, batch_index, model, batched, uncached, read, written, output in (
        LLMCall.objects.filter(reading_id=reading_id, outcome=CallOutcome.OK, task__isnull=False)
        .order_by("created_at")
        .values_list(
            "task_type",
            "task__batch_index",
            "model",
            "batched",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
        )
    ):
        answered[(task_type, batch_index)] = (model, batched, uncached + read + written, output)
    outputs: dict[str, int] = {}
    for (task_type, _), (*_, output) in answered.items():
        outputs[task_type] = outputs.get(task_type, 0) + output
    samples = []
    for (task_type, batch_index), (model, batched, counted, output) in answered.items():
        source = sources.get(task_key(task_type, batch_index))
        # A fallback model's tokens and answers are not the allocated model's.
        if not isinstance(source, dict) or not source.get("key") or source.get("model") != model:
            continue
        if not source.get("prompt_tokens"):
            continue
        samples.append(
            EstimateSample(
                key=source["key"],
                task_type=task_type,
                model=model,
                language=language,
                batched=batched,
                prompt_tokens=source["prompt_tokens"],
                quoted_tokens=sum(outputs.get(t, 0) for t in FEEDS[TaskType(task_type)]),
                input_tokens=counted,
                output_tokens=output,
            )
        )
    EstimateSample.objects.bulk_create(samples)
    global _added_since_prune
    _added_since_prune += len(samples)
    if _added_since_prune >= PRUNE_EVERY:
        _added_since_prune = 0
        prune()
    return len(samples)


def prune() -> None:
    """Only each key's newest samples are read: the rest go, in one statement for them all."""
    older = (
        EstimateSample.objects.annotate(
            newer=Window(RowNumber(), partition_by=F("key"), order_by=F("id").desc())
        )
        .filter(newer__gt=HISTORY_CALLS)
        .values("pk")
    )
    EstimateSample.objects.filter(pk__in=Subquery(older)).delete()


def on_reading_ended(sender, *, reading_id, **kwargs) -> None:
    """reading_ended's receiver (readings/apps.py)."""
    try:
        record_reading(reading_id)
    except Exception:  # noqa: BLE001 - learning must never fail the reading that taught it
        log.exception("could not learn from reading %s for cost estimates", reading_id)
