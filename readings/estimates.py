"""What a reading will cost: the expected figure and the worst case reserved against budgets.

Each planned task's prompt is rendered from the reading's own question and cards, with the
earlier phases' answers left empty (the "bare" prompt). Its input is then

    bare tokens x the spread's calibration ratio  +  the tokens of the earlier answers it quotes

where the earlier answers, and each task's own answer, are the median output of recent
successful calls of that task type on its model (else a quarter of max_tokens). The ratio
is what the provider counted, less the earlier answers it was actually given, over the bare
estimate, across the spread's recent finished readings: it absorbs the tokenizer's real
characters per token. Expected cost is then prices x those tokens.

The worst case assumes every task answers at its max_tokens on the dearest model it may fall
back to, quoting every earlier answer at its max_tokens, with the bare prompt counted at
three characters a token.
"""

import math
import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal

from allocation.allocator import AllocationConfig, AllocationError, get_allocator
from allocation.models import CallOutcome, LLMCall
from allocation.pricing import TokenUsage, UnknownModelPrice, cost_of, costs_on
from allocation.prompt import CHARS_PER_TOKEN
from budgets.models import CostEstimate
from readings.models import ReadingStatus
from spreads.models import Spread, TaskType
from spreads.planning import plan_tasks
from spreads.prompt_sandbox import RenderBudgetExceeded
from spreads.prompts import CardResult, DrawnCard, PromptContext, render_prompt, template_name_for

# The usual rule of thumb for English (Anthropic's tokenizer averages about four characters a
# token); the calibration ratio corrects it from what the provider counts.
# The worst case counts prompts at three characters a token: a third more tokens than usual,
# so a prompt full of names and punctuation still fits in what was reserved.
WORST_CHARS_PER_TOKEN = 3
# How many recent successful calls of a task type on a model make its history: enough for a
# stable median, recent enough to follow a prompt or model change within a day's traffic.
HISTORY_CALLS = 200
# Without any history, an answer is taken to fill a quarter of max_tokens (allocations give
# max_tokens ample headroom over a typical answer).
DEFAULT_OUTPUT_SHARE = 0.25
# How many of the spread's recent finished readings calibrate the input estimate.
CALIBRATION_READINGS = 30
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


class EstimateError(Exception):
    """The reading cannot be priced (e.g. a model nobody has a price for)."""


@dataclass(frozen=True)
class TaskEstimate:
    task_type: str
    batch_index: int
    model: str
    input_tokens: int
    output_tokens: int
    expected_usd: Decimal
    worst_case_usd: Decimal
    output_source: str  # "history" or "max_tokens share"
    bare_input_tokens: int = 0


@dataclass
class ReadingEstimate:
    tasks: list[TaskEstimate] = field(default_factory=list)

    @property
    def expected_usd(self) -> Decimal:
        return sum((t.expected_usd for t in self.tasks), Decimal(0))

    @property
    def worst_case_usd(self) -> Decimal:
        return sum((t.worst_case_usd for t in self.tasks), Decimal(0))

    def sources(self) -> dict:
        """Per task, what later readings calibrate against and where the output came from."""
        return {
            f"{t.task_type}:{t.batch_index}": {
                "bare_input_tokens": t.bare_input_tokens,
                "output_tokens": t.output_tokens,
                "output_source": t.output_source,
            }
            for t in self.tasks
        }


HISTORY_TTL_S = 30.0
_recent: "History | None" = None


class History:
    """What recent calls and readings say, each figure read once and kept for HISTORY_TTL_S:
    medians over hundreds of calls barely move in that time, and reading them afresh for
    every new reading cost most of the API's time in a burst of them."""

    def __init__(self):
        self._medians: dict[tuple[str, str], int | None] = {}
        self._ratios: dict[int, dict[str, float]] = {}
        self.read_at = time.monotonic()

    @classmethod
    def recent(cls) -> "History":
        """This process's history, read again once it is HISTORY_TTL_S old."""
        global _recent
        if _recent is None or time.monotonic() - _recent.read_at > HISTORY_TTL_S:
            _recent = cls()
        return _recent

    @staticmethod
    def forget() -> None:
        global _recent
        _recent = None

    def median_output(self, task_type: str, model: str) -> int | None:
        key = (task_type, model)
        if key not in self._medians:
            recent = list(
                LLMCall.objects.filter(task_type=task_type, model=model, outcome=CallOutcome.OK)
                .order_by("-created_at")
                .values_list("output_tokens", flat=True)[:HISTORY_CALLS]
            )
            self._medians[key] = round(statistics.median(recent)) if recent else None
        return self._medians[key]

    def input_ratio(self, spread: Spread, task_type: str) -> float:
        """Provider-counted over estimated bare input for the task type (1.0 without any
        finished reading to learn from)."""
        if spread.pk not in self._ratios:
            self._ratios[spread.pk] = _input_ratios(spread)
        return self._ratios[spread.pk].get(task_type, 1.0)


def _input_ratios(spread: Spread) -> dict[str, float]:
    estimates = dict(
        CostEstimate.objects.filter(reading__spread=spread, reading__status=ReadingStatus.DONE)
        .order_by("-created_at")
        .values_list("reading_id", "sources")[:CALIBRATION_READINGS]
    )
    if not estimates:
        return {}
    calls = LLMCall.objects.filter(
        reading_id__in=estimates, outcome=CallOutcome.OK, task__isnull=False
    ).values_list("reading_id", "task_type", "task__batch_index", "input_tokens", "output_tokens")
    by_reading: dict = {}
    for reading_id, task_type, batch_index, input_tokens, output_tokens in calls:
        by_reading.setdefault(reading_id, []).append(
            (task_type, batch_index, input_tokens, output_tokens)
        )
    counted: dict[str, int] = {}
    estimated: dict[str, int] = {}
    for reading_id, reading_calls in by_reading.items():
        answered: dict[str, int] = {}
        for task_type, _, _, output_tokens in reading_calls:
            answered[task_type] = answered.get(task_type, 0) + output_tokens
        for task_type, batch_index, input_tokens, _ in reading_calls:
            source = (estimates[reading_id] or {}).get(f"{task_type}:{batch_index}")
            if not isinstance(source, dict) or not source.get("bare_input_tokens"):
                continue
            quoted = sum(answered.get(t, 0) for t in FEEDS[TaskType(task_type)])
            counted[task_type] = counted.get(task_type, 0) + max(0, input_tokens - quoted)
            estimated[task_type] = estimated.get(task_type, 0) + source["bare_input_tokens"]
    return {t: counted[t] / estimated[t] for t in counted if estimated[t]}


def tokens(text: str, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    return math.ceil(len(text) / chars_per_token)


def estimate_reading(
    *,
    spread: Spread,
    question: str,
    cards: list[DrawnCard],
    history: History | None = None,
    batched: bool = False,
    language: str = "en",
) -> ReadingEstimate:
    """Raises EstimateError when the allocation cannot be resolved or priced. Prompts are
    rendered from the templates of the reading's `language`, as the reading's are. A `batched`
    (economy) reading is expected at the Message Batches price; its worst case stays at the
    standard price, since an expired or errored request may fall back to a standard call."""
    history = history or History.recent()
    try:
        configs = {t: get_allocator().get_config(t, spread=spread) for t in TaskType.values}
    except AllocationError as exc:
        raise EstimateError(str(exc)) from None
    plan = plan_tasks(spread.card_count, spread.batch_size)
    batches = sum(1 for t in plan if t.phase == 1)
    answers = {t: _expected_output(configs[t], history) for t in TaskType.values}
    # Each earlier task type's answers as quoted by later prompts: every card batch, one each
    # of the others.
    times = {t: batches if t == TaskType.CARD_INTERPRETATION else 1 for t in TaskType.values}
    by_index = {c.position.index: c for c in cards}
    estimate = ReadingEstimate()
    for task in plan:
        config = configs[task.task_type]
        context = PromptContext(question=question, spread=spread, cards=cards)
        if task.phase == 1:
            context.batch = [by_index[i] for i in task.position_indexes]
        else:
            context.card_results = [
                CardResult(position=c.position, card=c.card, orientation=c.orientation, text="")
                for c in cards
            ]
        template = template_name_for(spread, TaskType(task.task_type).kind, language)
        try:
            bare = render_prompt(template, context)
        except RenderBudgetExceeded as exc:
            raise EstimateError(str(exc)) from None
        feeds = FEEDS[TaskType(task.task_type)]
        quoted = sum(answers[t][0] * times[t] for t in feeds)
        quoted_at_worst = sum(configs[t].max_tokens * times[t] for t in feeds)
        bare_tokens = tokens(bare)
        input_tokens = math.ceil(bare_tokens * history.input_ratio(spread, task.task_type))
        input_tokens += quoted
        output_tokens, source = answers[task.task_type]
        estimate.tasks.append(
            TaskEstimate(
                task_type=task.task_type,
                batch_index=task.batch_index,
                model=config.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                expected_usd=_cost(config.model, input_tokens, output_tokens, batched=batched),
                worst_case_usd=_worst(
                    config, tokens(bare, WORST_CHARS_PER_TOKEN) + quoted_at_worst
                ),
                output_source=source,
                bare_input_tokens=bare_tokens,
            )
        )
    return estimate


def _expected_output(config: AllocationConfig, history: History) -> tuple[int, str]:
    median = history.median_output(config.task_type, config.model)
    if median is not None:
        return min(median, config.max_tokens), "history"
    return math.ceil(config.max_tokens * DEFAULT_OUTPUT_SHARE), "max_tokens share"


def _cost(model: str, input_tokens: int, output_tokens: int, *, batched=False) -> Decimal:
    usage = TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens, batched=batched)
    try:
        return cost_of(model, usage)
    except UnknownModelPrice:
        raise EstimateError(
            f"No price is known for {model!r}: add a model price override."
        ) from None


def _worst(config: AllocationConfig, input_tokens: int) -> Decimal:
    """The dearest model the task may end on, answering at max_tokens."""
    costs = costs_on(
        config.models, TokenUsage(input_tokens=input_tokens, output_tokens=config.max_tokens)
    )
    unpriced = [model for model, cost in costs.items() if cost is None]
    if unpriced:
        raise EstimateError(f"No price is known for {unpriced[0]!r}: add a model price override.")
    return max(costs.values())
