"""How big each planned call of a spread is, measured once per configuration.

Estimating a reading used to render all its calls, a dozen template renders and about 3 ms
of a POST's 8: in a burst, readings queued behind each other's renders. A call's size
depends on the reading only through its question and its cards, and simply: the question is
pasted verbatim wherever a template puts it, and a card's text (name, keywords, meaning) is
about 224 characters whichever card it is (sd 15 over the deck). So each call is rendered
once per configuration, for reference readings, and sizing a reading's calls is arithmetic:

    chars = the reference reading's chars
          + question_repeats x (this question's length - the reference question's)
          + card_chars x (this reading's card text / the reference cards' text - 1)

A configuration is everything a render reads: the spread and its positions, the templates'
bodies (staff's, else the files'), the allocation (models, max_tokens, cache TTLs), the
language, the mode and whether prompt caching is on. Their fingerprint is the cache key, so
an edit in the admin is a new shape as soon as this process sees it (staff tables are read
again within FRESH_S, allocation/staff_config.py), the way the limits cache follows edits.

Each shape also carries its prompt key (readings/estimate_history.py): the call rendered for
a placeholder reading, with no question and blank cards.
"""

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from allocation.allocator import AllocationConfig
from readings.store import ReadingState, render
from readings.task_runner import answer_format
from spreads import selectors
from spreads.models import Card, Spread, TaskType
from spreads.planning import PlannedTask
from spreads.prompt_sandbox import RenderBudgetExceeded
from spreads.prompts import (
    CardResult,
    DrawnCard,
    PromptContext,
    stored_templates,
    template_names,
)
from spreads.question_fence import fence_question

KINDS = [TaskType(t).kind for t in TaskType.values]
# What a prompt key is rendered with in place of the reading's cards.
BLANK_CARD = Card(slug="", name="", arcana="", suit="", keywords=[], upright="", reversed="")
# Two questions of different lengths: the difference in a part's length between them, over
# the difference in theirs, is how many times the part repeats the question.
SHORT_QUESTION, LONG_QUESTION = "q" * 20, "q" * 220
# Configurations kept per process (the oldest measured goes first): spreads x languages x
# modes in use, with room for edits.
KEPT = 64


class ShapeError(Exception):
    """A call cannot be rendered (a template over its render budget)."""


@dataclass(frozen=True)
class PartShape:
    name: str
    cache_ttl: str
    chars: int  # for the reference reading
    question_repeats: float  # how many times the part carries the question's text
    card_chars: int  # of `chars`, what the reference cards' text makes


@dataclass(frozen=True)
class SizedPart:
    name: str
    chars: int
    cache_ttl: str


@dataclass(frozen=True)
class CallShape:
    key: str  # the prompt key its history is kept under
    tool: str  # the forced tool's definition, as JSON ("": none)
    parts: tuple[PartShape, ...]  # system first, then the user message, in order

    def sized(self, question_growth: int, card_ratio: float) -> tuple[SizedPart, ...]:
        """The parts' lengths for a reading whose question is `question_growth` characters
        longer than the reference one and whose cards' text is `card_ratio` times theirs."""
        return tuple(
            SizedPart(
                name=part.name,
                chars=max(
                    0,
                    round(
                        part.chars
                        + part.question_repeats * question_growth
                        + part.card_chars * (card_ratio - 1)
                    ),
                ),
                cache_ttl=part.cache_ttl,
            )
            for part in self.parts
        )


@dataclass(frozen=True)
class SpreadShape:
    calls: tuple[CallShape, ...]  # one per planned task, in plan order
    reference_card_chars: int  # the reference cards' text, all positions together

    def sized_calls(self, question: str, cards: list[DrawnCard]):
        """Each call's (parts, tool) for this reading."""
        growth = len(fence_question(question)) - len(LONG_QUESTION)
        ratio = sum(card_text_chars(c) for c in cards) / max(1, self.reference_card_chars)
        return [(call.sized(growth, ratio), call.tool) for call in self.calls]


def card_text_chars(drawn: DrawnCard) -> int:
    """What a card puts into prompts, roughly: its name, keywords and meaning as drawn."""
    card = drawn.card
    return len(card.name) + len(", ".join(card.keywords or ())) + len(drawn.meaning)


_shapes: OrderedDict[str, SpreadShape] = OrderedDict()
# A burst of readings on a cold cache measures each shape once, not once per request thread.
_measuring = threading.Lock()


def spread_shape(
    spread: Spread,
    configs: dict[str, AllocationConfig],
    plan: list[PlannedTask],
    language: str,
    *,
    economy: bool,
) -> SpreadShape:
    """The spread's call shapes under this configuration: measured on first use, then read
    from this process's cache until any input to them changes."""
    positions = selectors.spread_positions(spread)
    templates = template_names(spread, KINDS, language)
    key = _fingerprint(spread, positions, configs, plan, templates, language, economy)
    if (shape := _shapes.get(key)) is not None:
        return shape
    with _measuring:
        if (shape := _shapes.get(key)) is None:
            shape = _measure(spread, positions, configs, plan, templates, language, economy)
            _shapes[key] = shape
            while len(_shapes) > KEPT:
                _shapes.popitem(last=False)
    return shape


def forget() -> None:
    """Measure every shape afresh (tests that change files or settings under a running
    process)."""
    _shapes.clear()


def _fingerprint(spread, positions, configs, plan, templates, language, economy) -> str:
    stored = stored_templates()
    sent = [
        [str(getattr(spread, f.attname)) for f in Spread._meta.concrete_fields],
        [(p.index, p.name, p.meaning) for p in positions],
        sorted((name, template, stored.get(template)) for name, template in templates.items()),
        sorted(
            (t, c.model, c.max_tokens, c.cache_ttl, list(c.fallbacks)) for t, c in configs.items()
        ),
        [(t.task_type, t.batch_index, list(t.position_indexes)) for t in plan],
        language,
        economy,
        settings.LLM_PROMPT_CACHING,
    ]
    return hashlib.blake2b(json.dumps(sent).encode(), digest_size=16).hexdigest()


def _measure(spread, positions, configs, plan, templates, language, economy) -> SpreadShape:
    reference = _reference_cards(positions)
    blank = [DrawnCard(position=p, card=BLANK_CARD, reversed=False) for p in positions]

    def rendered(question, cards):
        return _render_calls(spread, configs, plan, cards, question, templates, economy)

    placeholder = rendered("", blank)
    short = rendered(SHORT_QUESTION, reference)
    long = rendered(LONG_QUESTION, reference)
    long_blank = rendered(LONG_QUESTION, blank)
    grown = len(LONG_QUESTION) - len(SHORT_QUESTION)
    calls = []
    for task, (key_parts, tool), (short_parts, _), (long_parts, _), (blank_parts, _) in zip(
        plan, placeholder, short, long, long_blank, strict=True
    ):
        config = configs[task.task_type]
        sent = [language, task.task_type, config.model, config.max_tokens, tool]
        sent += [(part.name, part.text) for part in key_parts]
        calls.append(
            CallShape(
                key=hashlib.blake2b(json.dumps(sent).encode(), digest_size=16).hexdigest(),
                tool=tool,
                parts=tuple(
                    PartShape(
                        name=part.name,
                        cache_ttl=part.cache_ttl,
                        chars=len(part.text),
                        question_repeats=(len(part.text) - len(was.text)) / grown,
                        card_chars=len(part.text) - len(without_cards.text),
                    )
                    for part, was, without_cards in zip(
                        long_parts, short_parts, blank_parts, strict=True
                    )
                ),
            )
        )
    return SpreadShape(
        calls=tuple(calls), reference_card_chars=sum(card_text_chars(c) for c in reference)
    )


def _reference_cards(positions) -> list[DrawnCard]:
    """Cards of median length, upright and reversed in turn: a typical reading's."""
    by_length = sorted(
        selectors.deck(),
        key=lambda card: card_text_chars(DrawnCard(position=None, card=card, reversed=False)),
    )
    middle = len(by_length) // 2
    chosen = by_length[max(0, middle - len(positions) // 2) :][: len(positions)]
    while len(chosen) < len(positions):  # a deck smaller than the spread (tests)
        chosen.append(chosen[-1] if chosen else BLANK_CARD)
    return [
        DrawnCard(position=p, card=card, reversed=bool(i % 2))
        for i, (p, card) in enumerate(zip(positions, chosen, strict=True))
    ]


def _render_calls(spread, configs, plan, cards, question, templates, economy):
    """Each planned task's prompt parts and forced tool (as JSON, "" for none), rendered by
    the engine's own code with the earlier answers left empty."""
    state = ReadingState(
        reading=None,
        spread=spread,
        cards=cards,
        tasks=plan,
        configs=configs,
        templates=templates,
        economy=economy,
    )
    calls = []
    for task in plan:
        context = PromptContext(question=question, spread=spread, cards=cards)
        if task.phase == 1:
            wanted = set(task.position_indexes)
            context.batch = [c for c in cards if c.position.index in wanted]
        else:
            context.card_results = [
                CardResult(position=c.position, card=c.card, orientation=c.orientation, text="")
                for c in cards
            ]
        try:
            prompt = render(state, task.task_type, context)
        except RenderBudgetExceeded as exc:
            raise ShapeError(str(exc)) from None
        answer = answer_format(task)
        tools = answer.request()["tools"] if answer else []
        tool = json.dumps(tools, separators=(",", ":")) if tools else ""
        calls.append(((*prompt.system, *prompt.user), tool))
    return calls
