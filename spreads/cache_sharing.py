"""Where a spread's model allocation keeps a reading's calls from sharing cached prompt parts.

Caches are per model. Within a reading, a later phase reads what an earlier phase cached only
on the same model: the card interpretations (phase 1) write the layout (the question, the
positions and the cards) for the overall reading and relationships (phase 2), which write the
layout and the card results for the advice (phase 3). Across readings every call of the spread
sends the same guide, so each model the spread uses keeps, and pays to write, its own copy.
Calls of one phase start together, so none of them reads another's write (prompt_caching).

And a breakpoint caches nothing when the prompt up to it is shorter than the model's minimum
cacheable length: the part is then sent, and paid for, as plain input every time.

`sharing_problems` says both in words for the spread admin, with the token counts estimated
from the spread's templates rendered against a sample reading (prompt_editor's sample) and,
for the card results, the card calls' recorded answers.
"""

import math
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Avg
from django.utils import timezone

from allocation.allocator import AllocationError, get_allocator
from allocation.models import CacheTTL, CallOutcome, LLMCall
from allocation.money import usd_exact
from allocation.pricing import Pricer, TokenUsage, UnknownModelPrice
from allocation.prompt import estimate_tokens
from spreads.models import Spread, TaskType
from spreads.planning import plan_tasks
from spreads.prompt_caching import PlannedCall, cache_ttls, guide_steps, min_cacheable_tokens
from spreads.prompts import (
    GUIDE,
    LAYOUT,
    RESULTS,
    render_guide,
    render_prompt,
    sample_context,
    template_names,
)

# How far back the card calls' answers count towards the size of the card results.
HISTORY = timedelta(days=30)
PART_NAMES = {GUIDE: "guide", LAYOUT: "layout", RESULTS: "card results"}
PARTS_IN_ORDER = (GUIDE, LAYOUT, RESULTS)
UPTO = {
    GUIDE: "the guide",
    LAYOUT: "the guide and the layout",
    RESULTS: "the guide, the layout and the card results",
}
WHO = {
    "card_interpretation": "the card interpretations",
    "overall_reading": "the overall reading",
    "relationships": "the relationships reading",
    "advice": "the advice",
}


@dataclass(frozen=True)
class Call:
    """One task of the spread's readings as the allocator resolves it now."""

    task_type: str
    phase: int
    model: str
    cache_ttl: str

    @property
    def planned(self) -> PlannedCall:
        return PlannedCall(self.task_type, self.phase, self.model, self.cache_ttl)

    @property
    def who(self) -> str:
        return WHO.get(self.task_type, self.task_type.replace("_", " "))


def planned_calls(spread: Spread) -> list[Call]:
    """Each task type of the spread's readings with its phase and the model it would use now
    (a task whose allocation cannot be used is left out: the models table says why)."""
    phases = {
        task.task_type: task.phase
        for task in plan_tasks(max(spread.card_count, 1), max(spread.batch_size or 1, 1))
    }
    allocator = get_allocator()
    calls = []
    for task_type, phase in phases.items():
        try:
            config = allocator.get_config(task_type, spread=spread)
        except AllocationError:
            continue
        calls.append(Call(str(task_type), phase, config.model, config.cache_ttl))
    return calls


def shared_part_tokens(spread: Spread) -> dict[str, int] | None:
    """About how many tokens each shared prompt part of the spread's readings takes; None if
    a template does not render (the template's own check says why)."""
    context = sample_context(spread)
    names = template_names(spread, [])
    try:
        text = {part: render_prompt(names[part], context) for part in PARTS_IN_ORDER}
    except Exception:  # noqa: BLE001 - a broken template is reported where it is edited
        return None
    tokens = {part: estimate_tokens(body) for part, body in text.items()}
    # The sample's card results are a line each; a real one is a card call's whole answer.
    tokens[RESULTS] += _recorded_card_answer_tokens(spread)
    return tokens


def guide_tokens_by_model(spread: Spread, calls: list[Call]) -> dict[str, int] | None:
    """About how many tokens the guide sent on each model takes: it carries the rules of the
    steps run on that model (prompt_caching.guide_steps). None if the guide does not render."""
    names = template_names(spread, [])
    context = sample_context(spread)
    rendered: dict[str, str] = {}
    planned = [call.planned for call in calls]

    def size(steps: tuple[str, ...]) -> int:
        return estimate_tokens(render_guide(names, context, steps, rendered))

    try:
        return {
            call.model: size(guide_steps(call.planned, planned, guide_tokens=size))
            for call in calls
        }
    except Exception:  # noqa: BLE001 - a broken template is reported where it is edited
        return None


def _recorded_card_answer_tokens(spread: Spread) -> int:
    average = (
        LLMCall.objects.filter(
            spread=spread,
            task_type=TaskType.CARD_INTERPRETATION,
            outcome=CallOutcome.OK,
            created_at__gte=timezone.now() - HISTORY,
        )
        .order_by()
        .aggregate(tokens=Avg("output_tokens"))["tokens"]
    )
    if not average:
        return 0
    batches = math.ceil(spread.card_count / max(spread.batch_size or 1, 1))
    return round(average * batches)


def sharing_problems(spread: Spread) -> list[str]:
    """Which of the spread's tasks cannot read each other's cache because their models
    differ, and which cache breakpoints fall short of their model's minimum length, each with
    what it costs, in words."""
    if not settings.LLM_PROMPT_CACHING:
        return ["Prompt caching is switched off (LLM_PROMPT_CACHING): no call reads a cache."]
    calls = planned_calls(spread)
    tokens = shared_part_tokens(spread)
    pricer = Pricer()
    return [
        *_broken_sharing(spread, calls, tokens, pricer),
        *_guide_copies(spread, calls),
        *_too_short(spread, calls, tokens, guide_tokens_by_model(spread, calls)),
    ]


def _reading_ttl(spread: Spread, call: Call) -> str:
    return call.cache_ttl or spread.reading_cache_ttl


def _shared_with(reader: Call, writer: Call) -> tuple[str, ...]:
    """The reading's parts `reader` could read from `writer`'s cache on one model."""
    if writer.phase >= reader.phase:
        return ()
    return (LAYOUT, RESULTS) if writer.phase > 1 else (LAYOUT,)


def _broken_sharing(spread, calls, tokens, pricer) -> list[str]:
    notes = []
    for reader in calls:
        if reader.phase == 1 or _reading_ttl(spread, reader) == CacheTTL.OFF:
            continue
        others = [w for w in calls if w.model != reader.model and _shared_with(reader, w)]
        if not others:
            continue
        same = [w for w in calls if w.model == reader.model and _shared_with(reader, w)]
        still = sorted({part for w in same for part in _shared_with(reader, w)}, key=_order)
        lost = sorted(
            {part for w in others for part in _shared_with(reader, w)} - set(still), key=_order
        )
        cannot = ", nor ".join(
            f"the {_parts(_shared_with(reader, w))} {w.who} cached on {w.model}" for w in others
        )
        note = f"{_capital(reader.who)} on {reader.model} cannot read {cannot}"
        if still:
            sources = " and ".join(w.who for w in same)
            note += f"; it reads the {_parts(still)} from {sources} on {reader.model} instead"
        if lost:
            note += f": it sends the {_parts(lost)}{_cost(reader.model, lost, tokens, pricer)}"
        else:
            note += ", so this costs nothing more"
        notes.append(note + ".")
    return notes


def _guide_copies(spread, calls) -> list[str]:
    if spread.guide_cache_ttl == CacheTTL.OFF:
        return []
    models = sorted({call.model for call in calls})
    if len(models) < 2:
        return []
    who = "; ".join(
        f"{' and '.join(c.who for c in calls if c.model == model)} on {model}" for model in models
    )
    return [
        f"The guide is cached apart on each of the {len(models)} models ({who}): every model "
        "writes, and pays the write premium for, its own copy, and one model's calls cannot "
        "read another's."
    ]


def _too_short(spread, calls, tokens, guides) -> list[str]:
    if tokens is None or guides is None:
        return []
    found: dict[tuple[str, str], list[Call]] = {}
    by_model = {model: {**tokens, GUIDE: guide} for model, guide in guides.items()}
    for call in calls:
        ttls = cache_ttls(
            call.planned,
            [c.planned for c in calls],
            guide_ttl=spread.guide_cache_ttl,
            reading_ttl=spread.reading_cache_ttl,
        )
        for part in ttls:
            if _prefix(part, by_model[call.model]) < min_cacheable_tokens(call.model):
                found.setdefault((call.model, part), []).append(call)
    notes = []
    for (model, part), short in sorted(found.items(), key=lambda i: (i[0][0], _order(i[0][1]))):
        notes.append(
            f"On {model} the prompt up to the end of the {PART_NAMES[part]} ({UPTO[part]}, "
            f"about {_prefix(part, by_model[model]):,} tokens) is shorter than the model's minimum "
            f"cacheable prompt ({min_cacheable_tokens(model):,} tokens): "
            f"{' and '.join(c.who for c in short)} cannot cache it there, so it is sent as "
            "plain input on every call."
        )
    return notes


def _prefix(part: str, tokens: dict[str, int]) -> int:
    """The tokens from the start of the prompt to the end of `part`."""
    return sum(tokens[p] for p in PARTS_IN_ORDER[: _order(part) + 1])


def _order(part: str) -> int:
    return PARTS_IN_ORDER.index(part)


def _parts(parts) -> str:
    return " and ".join(PART_NAMES[part] for part in parts)


def _capital(text: str) -> str:
    text = text.removeprefix("the ")
    return text[:1].upper() + text[1:]


def _cost(model: str, parts, tokens, pricer: Pricer) -> str:
    """How many tokens are sent at the full input price, and what that costs over reading
    them from the cache, on `model`."""
    if tokens is None:
        return " at the full input price every reading"
    count = sum(tokens[part] for part in parts)
    text = f" (about {count:,} tokens) at the full input price every reading"
    try:
        extra = pricer.cost(model, TokenUsage(input_tokens=count)) - pricer.cost(
            model, TokenUsage(cache_read_tokens=count)
        )
    except UnknownModelPrice:
        return text
    extra = usd_exact(extra.quantize(Decimal("0.000001")))
    return f"{text}, about {extra} more than cache reads would cost"
