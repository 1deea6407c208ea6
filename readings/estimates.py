"""What a reading will cost: the expected figure and the worst case reserved against budgets.

Each planned task's call is sized as the engine renders it (readings.store.render): the
spread's guide with the steps its model runs, the layout, the card results, its own
instruction and the cache breakpoints, and for a card batch the tool its answer is forced
through. The calls are rendered once per configuration, not per reading
(readings/prompt_shapes.py): a reading's question and cards change their sizes by
arithmetic. Only the earlier phases' answers are missing: they are added as the tokens those
answers are expected to take.

Expected tokens, per task:
- input: the sized call at four characters a token, times the ratio the provider counted
  to that figure in history, plus the earlier answers it quotes;
- output: the mean answer in history (a quarter of max_tokens without any).
History is kept per prompt key (readings/estimate_history.py): the model, its max_tokens, the
language and the task's prompt rendered for a placeholder reading (no question, blank cards).
A template, guide or allocation change makes a new key with no history of its own, so what
was learned of the old prompt never skews the new one; standard, economy and uncached calls
send the same prompt, so they share a key.

Expected price: Anthropic prices the cache apart (reads at a tenth or less of the input
price, writes at 1.25x for 5 minutes and 2x for an hour), and most of a later task's prompt
is cached. So the input is split as the cache would split it: a prefix ending at the guide's
breakpoint is taken as read (every reading of the spread on that model sends it; only the
first in an hour writes it), a prefix ending at the layout's or the card results' breakpoint
is read if a call of an earlier phase on the same model sent it, else written, and a prefix
shorter than the model's minimum cacheable length is not cached at all. An economy
(`batched`) reading is priced at the Message Batches rates.

The worst case assumes every task answers at its max_tokens on the dearest model it may fall
back to, quoting every earlier answer at its max_tokens, with the rendered call counted at
three characters a token and, with prompt caching on, every input token priced as a 1-hour
cache write (the dearest way to send it). Always at standard prices: an expired or errored
batch request may fall back to a standard call.
"""

import math
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from allocation.allocator import AllocationConfig, AllocationError, get_allocator
from allocation.models import CacheTTL
from allocation.pricing import TokenUsage, UnknownModelPrice, cost_of, costs_on
from allocation.prompt import CHARS_PER_TOKEN
from readings.estimate_history import FEEDS, NOTHING_LEARNED, Learned, learned, task_key
from readings.prompt_shapes import ShapeError, SizedPart, spread_shape
from spreads.models import Spread, TaskType
from spreads.planning import plan_tasks
from spreads.prompt_caching import min_cacheable_tokens
from spreads.prompts import GUIDE, RESULTS, DrawnCard

# The worst case counts prompts at three characters a token: a third more tokens than usual,
# so a prompt full of names and punctuation still fits in what was reserved.
WORST_CHARS_PER_TOKEN = 3
# Without any history, an answer is taken to fill a quarter of max_tokens (allocations give
# max_tokens ample headroom over a typical answer).
DEFAULT_OUTPUT_SHARE = 0.25


class EstimateError(Exception):
    """The reading cannot be priced (e.g. a model nobody has a price for)."""


@dataclass(frozen=True)
class TaskEstimate:
    task_type: str
    batch_index: int
    model: str
    input_tokens: int  # all of it: uncached, cache reads and cache writes
    output_tokens: int
    expected_usd: Decimal
    worst_case_usd: Decimal
    output_source: str  # "history" or "max_tokens share"
    # The worst case is worst_base_usd + worst_per_quoted_token_usd x the tokens of the
    # earlier answers it quotes: known, when its phase starts (readings/budgeting.py).
    worst_base_usd: Decimal = Decimal(0)
    worst_per_quoted_token_usd: Decimal = Decimal(0)
    key: str = ""  # the prompt key its history is kept under
    prompt_tokens: int = 0  # the sized call at four characters a token, no earlier answers
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


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
        """Per task (by task_key), what the reading's calls will teach the estimator once it
        is done (readings/estimate_history.py), where the figures came from, and what the
        task is expected to cost and may cost at worst (readings/budgeting.py holds its
        budgets to them)."""
        return {
            task_key(t.task_type, t.batch_index): {
                "key": t.key,
                "model": t.model,
                "prompt_tokens": t.prompt_tokens,
                "input_tokens": t.input_tokens,
                "cache_read_tokens": t.cache_read_tokens,
                "cache_write_tokens": t.cache_write_tokens,
                "output_tokens": t.output_tokens,
                "output_source": t.output_source,
                "expected_usd": str(t.expected_usd),
                "worst_case_usd": str(t.worst_case_usd),
                "worst_base_usd": str(t.worst_base_usd),
                "worst_per_quoted_token_usd": str(t.worst_per_quoted_token_usd),
            }
            for t in self.tasks
        }


HISTORY_TTL_S = 30.0
_recent: "History | None" = None


class History:
    """What each prompt key's samples say, read once and kept for HISTORY_TTL_S: means over
    hundreds of calls barely move in that time, and reading them afresh for every new
    reading cost most of the API's time in a burst of them."""

    def __init__(self):
        self._learned: dict[str, Learned] = {}
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

    def learned(self, keys: list[str]) -> list[Learned]:
        missing = [key for key in keys if key not in self._learned]
        if missing:
            found = learned(missing)
            self._learned.update({key: found.get(key, NOTHING_LEARNED) for key in missing})
        return [self._learned[key] for key in keys]


@dataclass(frozen=True)
class _Breakpoint:
    prefix: tuple  # what must be identical for a call to read it: model, tool, parts so far
    tokens: float  # of the whole prefix, as the provider is expected to count them
    # The same at four characters a token, as the engine sizes the prefixes it caches
    # (spreads.prompt_caching): whether a prefix is long enough to cache is judged on it,
    # not on a ratio learned from whole prompts.
    estimated_tokens: int
    ttl: str
    across_readings: bool  # ends at the guide: every reading of the spread sends it


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
    (economy) reading is expected at the Message Batches price and with the economy's cache
    breakpoints; its worst case stays at the standard price."""
    history = history or History.recent()
    try:
        configs = {t: get_allocator().get_config(t, spread=spread) for t in TaskType.values}
    except AllocationError as exc:
        raise EstimateError(str(exc)) from None
    plan = plan_tasks(spread.card_count, spread.batch_size)
    try:
        shape = spread_shape(spread, configs, plan, language, economy=batched)
    except ShapeError as exc:
        raise EstimateError(str(exc)) from None
    calls = shape.sized_calls(question, cards)
    keys = [call.key for call in shape.calls]
    known = history.learned(keys)

    outputs = [_expected_output(configs[t.task_type], k) for t, k in zip(plan, known, strict=True)]
    answered: dict[str, int] = {}
    for task, (tokens_out, _) in zip(plan, outputs, strict=True):
        answered[task.task_type] = answered.get(task.task_type, 0) + tokens_out
    cached_in_reading: set[tuple] = set()
    written_by_phase: dict[int, set[tuple]] = {}
    estimate = ReadingEstimate()
    for task, (parts, tool), key, seen, (output_tokens, source) in zip(
        plan, calls, keys, known, outputs, strict=True
    ):
        config = configs[task.task_type]
        # Earlier phases' writes are readable by now; this phase's calls start together.
        for phase, written in written_by_phase.items():
            if phase < task.phase:
                cached_in_reading |= written
        ratio = seen.input_ratio if seen.input_ratio is not None else 1.0
        feeds = FEEDS[TaskType(task.task_type)]
        quoted = {
            RESULTS: answered.get(TaskType.CARD_INTERPRETATION, 0)
            if TaskType.CARD_INTERPRETATION in feeds
            else 0,
            "own": sum(answered.get(t, 0) for t in feeds if t != TaskType.CARD_INTERPRETATION),
        }
        breakpoints, whole = _breakpoints(parts, tool, config.model, ratio, quoted)
        read, writes = _cache_use(breakpoints, config.model, cached_in_reading)
        written_by_phase.setdefault(task.phase, set()).update(
            b.prefix
            for b in breakpoints
            if b.estimated_tokens >= min_cacheable_tokens(config.model)
        )
        usage = TokenUsage(
            input_tokens=max(0, round(whole) - read - sum(writes.values())),
            output_tokens=output_tokens,
            cache_read_tokens=read,
            cache_write_5m_tokens=writes[CacheTTL.FIVE_MINUTES],
            cache_write_1h_tokens=writes[CacheTTL.ONE_HOUR],
            batched=batched,
        )
        quoted_at_worst = sum(configs[t.task_type].max_tokens for t in plan if t.task_type in feeds)
        base, per_quoted = _worst(config, parts, tool)
        estimate.tasks.append(
            TaskEstimate(
                task_type=task.task_type,
                batch_index=task.batch_index,
                model=config.model,
                input_tokens=round(whole),
                output_tokens=output_tokens,
                expected_usd=_cost(config.model, usage),
                worst_case_usd=base + per_quoted * quoted_at_worst,
                output_source=source,
                worst_base_usd=base,
                worst_per_quoted_token_usd=per_quoted,
                key=key,
                prompt_tokens=_prompt_tokens(parts, tool),
                cache_read_tokens=read,
                cache_write_tokens=sum(writes.values()),
            )
        )
    return estimate


def tokens(chars: int, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    """A text of `chars` characters in tokens, as the engine sizes prompts."""
    return math.ceil(chars / chars_per_token)


def _prompt_tokens(parts: tuple[SizedPart, ...], tool: str) -> int:
    return tokens(len(tool)) + sum(tokens(p.chars) for p in parts)


def _breakpoints(
    parts: tuple[SizedPart, ...], tool: str, model: str, ratio: float, quoted: dict
) -> tuple[list[_Breakpoint], float]:
    """The call's cache breakpoints and its whole input, in expected provider tokens. Tools
    come first in the provider's cache order, then the system, then the user message."""
    estimated = tokens(len(tool))
    total = estimated * ratio
    prefix: tuple = (model, tool)
    found = []
    for i, part in enumerate(parts):
        answers = quoted.get(part.name, 0) + (quoted["own"] if i == len(parts) - 1 else 0)
        estimated += tokens(part.chars) + answers
        total += tokens(part.chars) * ratio + answers
        prefix = (*prefix, part.name)
        if part.cache_ttl:
            found.append(_Breakpoint(prefix, total, estimated, part.cache_ttl, part.name == GUIDE))
    return found, total


def _cache_use(
    breakpoints: list[_Breakpoint], model: str, cached_in_reading: set[tuple]
) -> tuple[int, dict[str, int]]:
    """Tokens read from the cache, and written at each TTL, as the provider counts them: the
    longest cached prefix is read, and each breakpoint beyond it writes its stretch."""
    usable = [b for b in breakpoints if b.estimated_tokens >= min_cacheable_tokens(model)]
    read = max(
        (b.tokens for b in usable if b.across_readings or b.prefix in cached_in_reading),
        default=0,
    )
    writes = {CacheTTL.FIVE_MINUTES: 0, CacheTTL.ONE_HOUR: 0}
    covered = read
    for b in usable:
        if b.tokens > covered:
            writes[b.ttl] += round(b.tokens) - round(covered)
            covered = b.tokens
    return round(read), writes


def _expected_output(config: AllocationConfig, seen: Learned) -> tuple[int, str]:
    if seen.output_tokens is not None:
        return min(seen.output_tokens, config.max_tokens), "history"
    return math.ceil(config.max_tokens * DEFAULT_OUTPUT_SHARE), "max_tokens share"


def _cost(model: str, usage: TokenUsage) -> Decimal:
    try:
        return cost_of(model, usage)
    except UnknownModelPrice:
        raise EstimateError(
            f"No price is known for {model!r}: add a model price override."
        ) from None


def _worst(
    config: AllocationConfig, parts: tuple[SizedPart, ...], tool: str
) -> tuple[Decimal, Decimal]:
    """What the task costs at worst, before the earlier answers it quotes, and per quoted
    token: the dearest model it may end on, answering at max_tokens. With prompt caching on,
    every input token is priced as a 1-hour cache write, the dearest way to send it: where
    the breakpoints fall depends on the mode, and an economy request that expires is sent
    again as a standard call with the standard's breakpoints."""
    whole = tokens(len(tool), WORST_CHARS_PER_TOKEN)
    whole += sum(tokens(part.chars, WORST_CHARS_PER_TOKEN) for part in parts)
    base = _dearest(config, whole, output_tokens=config.max_tokens)
    per_million = _dearest(config, 1_000_000, output_tokens=0)
    return base, per_million / 1_000_000


def _dearest(config: AllocationConfig, input_tokens: int, *, output_tokens: int) -> Decimal:
    cached = settings.LLM_PROMPT_CACHING
    usage = TokenUsage(
        input_tokens=0 if cached else input_tokens,
        cache_write_1h_tokens=input_tokens if cached else 0,
        output_tokens=output_tokens,
    )
    costs = costs_on(config.models, usage)
    unpriced = [model for model, cost in costs.items() if cost is None]
    if unpriced:
        raise EstimateError(f"No price is known for {unpriced[0]!r}: add a model price override.")
    return max(costs.values())
