"""Prompt templates: find them, render them, and check them before staff save them.

A template stored in the database (PromptTemplate, edited in the admin) overrides the file
of the same name in templates/reading/. Templates render in a restricted engine (an
allow-list of tags and filters, spreads.prompt_sandbox) against plain values built from the
reading in one place (spreads.prompt_data), never against ORM objects. Prompts are plain
text, so autoescape is off; the querent's question reaches a template only as a variable,
never as template code, fenced so that it cannot close its fence (spreads.question_fence).

Every call's prompt is built in the same order, most shared first, so that the provider can
cache what calls have in common (identical bytes, up to a cache breakpoint):
1. the spread's guide (system): the same for every call on one model, in every reading of
   the spread (it carries the rules of the steps that model runs: spreads.prompt_caching);
2. the layout (user): the question and the cards, the same for every call of one reading;
3. the card results (user, phases 2 and 3): the same for the later calls of one reading;
4. the call's own instruction (user), last: its cards, or the earlier texts it builds on.
"""

from dataclasses import dataclass, field, replace
from functools import lru_cache

from django.template import TemplateDoesNotExist, TemplateSyntaxError

from allocation.prompt import Prompt, PromptPart
from allocation.staff_config import StaffTable
from spreads.models import Card, Position, PromptTemplate, Spread
from spreads.prompt_data import template_data, unknown_attributes
from spreads.prompt_sandbox import RenderBudgetExceeded, engine, lookups, refusal
from spreads.prompt_sandbox import render as render_bounded


# A prompt's inputs, as the engine and the estimates hold them (ORM objects). Templates never
# see these: PromptContext.as_dict hands them spreads.prompt_data's plain copies.
@dataclass(frozen=True)
class DrawnCard:
    position: Position
    card: Card
    reversed: bool

    @property
    def orientation(self) -> str:
        return "reversed" if self.reversed else "upright"

    @property
    def meaning(self) -> str:
        return self.card.reversed if self.reversed else self.card.upright


@dataclass(frozen=True)
class CardResult:
    """What phase 1 wrote about one card, handed to the later phases."""

    position: Position
    card: Card
    orientation: str
    text: str


# The steps of a reading, by the kind word of their task type, in the order they run. A
# guide can carry the rules of only some of them (guide_steps below).
STEPS = ("card", "overall", "relationships", "advice")


@dataclass
class PromptContext:
    question: str
    spread: Spread
    cards: list[DrawnCard]
    batch: list[DrawnCard] = field(default_factory=list)
    card_results: list[CardResult] = field(default_factory=list)
    overall: str = ""
    relationships: str = ""
    steps: tuple[str, ...] = STEPS  # the steps whose rules the guide carries

    @property
    def positions(self) -> list[Position]:
        """Every position of the spread: a reading draws a card for each."""
        return sorted((c.position for c in self.cards), key=lambda position: position.index)

    def as_dict(self) -> dict:
        """What templates see: plain values, never the ORM objects above."""
        return template_data(self)


# The shared parts, most shared first (see the module docstring); each call's own
# instruction comes after them.
GUIDE, LAYOUT, RESULTS = "guide", "layout", "card_results"


SHARED_PARTS = (GUIDE, LAYOUT, RESULTS)


def template_names(spread: Spread, kinds: list[str], language: str = "en") -> dict[str, str]:
    """The template of each shared part and of each task kind, resolved once per reading."""
    return {name: template_name_for(spread, name, language) for name in (*SHARED_PARTS, *kinds)}


def build_prompt(
    names: dict[str, str],
    kind: str,
    context: PromptContext,
    *,
    later_phase: bool,
    cache_ttls: dict[str, str] | None = None,
    rendered: dict[str, str] | None = None,
    guide_steps: tuple[str, ...] = STEPS,
) -> Prompt:
    """Render a call's prompt from the templates `names` gives; cache_ttls maps a shared
    part's name to the TTL of the cache breakpoint that ends it, guide_steps says whose rules
    the guide carries. `rendered` keeps the shared parts of one reading once rendered (they
    are the same for all its calls)."""
    cache_ttls = cache_ttls or {}
    rendered = {} if rendered is None else rendered
    guide = render_guide(names, context, guide_steps, rendered)
    parts = [PromptPart(GUIDE, guide, cache_ttls.get(GUIDE, ""))]
    for name in [LAYOUT, *([RESULTS] if later_phase else [])]:
        if name not in rendered:
            rendered[name] = render_prompt(names[name], context)
        parts.append(PromptPart(name, rendered[name], cache_ttls.get(name, "")))
    own = PromptPart(kind, render_prompt(names[kind], context))
    return Prompt(system=(parts[0],), user=(*parts[1:], own))


def render_guide(
    names: dict[str, str],
    context: PromptContext,
    steps: tuple[str, ...] = STEPS,
    rendered: dict[str, str] | None = None,
) -> str:
    """The spread's guide with the rules of `steps` (kept in `rendered`, per set of steps)."""
    rendered = {} if rendered is None else rendered
    key = GUIDE if steps == STEPS else f"{GUIDE}:{'+'.join(steps)}"
    if key not in rendered:
        rendered[key] = render_prompt(names[GUIDE], replace(context, steps=steps))
    return rendered[key]


# Staff's templates, overriding the files of the same name, by name.
_stored = StaffTable(PromptTemplate, lambda rows: {row.name: row.body for row in rows})


def read_stored_templates() -> None:
    """Read staff's templates now unless this process read them a moment ago: a caller that
    is about to render where no database connection should be opened calls this first."""
    _stored.get()


def stored_templates() -> dict[str, str]:
    """Staff's template bodies by name (a template not among them is read from its file)."""
    return _stored.get()


def stored_templates_fresh() -> bool:
    return _stored.is_fresh()


@lru_cache(maxsize=512)
def _compiled(body: str):
    """A stored template, parsed once per process and body (an edit is a new body)."""
    return engine().from_string(body)


def template_exists(name: str) -> bool:
    if name in _stored.get():
        return True
    try:
        engine().get_template(name)
    except TemplateDoesNotExist:
        return False
    except TemplateSyntaxError:
        return True
    return True


def template_name_for(spread: Spread, kind: str, language: str = "en") -> str:
    """The spread's chosen template, else <slug>_<kind>.txt, else the generic <kind>.txt.

    English is the base language. Another language's templates carry its code before .txt
    (card_ko.txt, celtic_cross_card_ko.txt): the spread's own one in that language if it
    exists, else the generic one in that language, so a reading never changes language."""
    chosen = spread.template_field(kind)
    specific = f"{spread.slug}_{kind}.txt"
    name = chosen or (specific if template_exists(specific) else f"{kind}.txt")
    if language == "en":
        return name
    translated = in_language(name, language)
    return translated if template_exists(translated) else f"{kind}_{language}.txt"


def in_language(name: str, language: str) -> str:
    """card.txt -> card_ko.txt: the name of a template's version in `language`."""
    return f"{name.removesuffix('.txt')}_{language}.txt"


def render_prompt(name: str, context: PromptContext) -> str:
    """The template `name` rendered for `context`, within the render budget; past it,
    RenderBudgetExceeded naming the template (the task fails as an invalid prompt)."""
    stored = _stored.get().get(name)
    template = _compiled(stored) if stored is not None else engine().get_template(name)
    try:
        return render_bounded(template, context.as_dict()).strip()
    except RenderBudgetExceeded as exc:
        raise RenderBudgetExceeded(
            f"The prompt template {name} went over its render budget ({exc}): fix it under "
            "Prompt templates."
        ) from None


# What a sample reading says, per language: a Korean template previews with Korean text
# where a Korean reading would have it (the question, the earlier answers).
SAMPLE_TEXTS = {
    "en": {
        "question": "What should I focus on this year?",
        "card_result": "{card} in {position}: {meaning}",
        "overall": "A sample overall reading.",
        "relationships": "A sample look at how the cards relate.",
    },
    "ko": {
        "question": "올해 나는 무엇에 집중해야 할까요?",
        "card_result": "{position} 자리의 {card}: 이 카드가 지금 말하는 것의 예시입니다.",
        "overall": "전체 리딩의 예시입니다.",
        "relationships": "카드들이 서로 어떻게 이어지는지에 대한 예시입니다.",
    },
}


def sample_context(spread: Spread | None = None, language: str = "en") -> PromptContext:
    """A plausible reading (first cards of the deck, alternating orientation) to render a
    template against before it is saved, with its words in `language`."""
    texts = SAMPLE_TEXTS.get(language, SAMPLE_TEXTS["en"])
    spread = spread or Spread(slug="sample", name="Sample spread", card_count=3)
    positions = list(spread.positions.all()) if spread.pk else []
    if not positions:
        positions = [
            Position(index=i, name=name, meaning=f"The {name.lower()} of the matter.")
            for i, name in enumerate(["Past", "Present", "Future"], start=1)
        ]
    deck = list(Card.objects.all()[: len(positions)]) or [
        Card(
            name="The Fool",
            keywords=["beginnings"],
            upright="A fresh start.",
            reversed="Recklessness.",
        )
    ] * len(positions)
    cards = [
        DrawnCard(position=p, card=c, reversed=bool(i % 2))
        for i, (p, c) in enumerate(zip(positions, deck, strict=False))
    ]
    results = [
        CardResult(
            position=d.position,
            card=d.card,
            orientation=d.orientation,
            text=texts["card_result"].format(
                card=d.card.name, position=d.position.name, meaning=d.meaning
            ),
        )
        for d in cards
    ]
    return PromptContext(
        question=texts["question"],
        spread=spread,
        cards=cards,
        batch=cards,
        card_results=results,
        overall=texts["overall"],
        relationships=texts["relationships"],
    )


# Readings refuse a longer question (readings/services.py).
MAX_QUESTION_LENGTH = 1000
# What the worst input carries as each earlier answer: about what 1,024 tokens say.
LONGEST_ANSWER_CHARS = 4_000


def worst_context() -> PromptContext:
    """The heaviest input a template can meet: the longest question, the spread with the most
    positions, the deck's wordiest cards, and long earlier answers. A template that stays
    within the render budget here stays within it for every reading."""
    spreads = Spread.objects.order_by("-card_count")
    spread = next((s for s in spreads if s.positions.exists()), None)
    sample = sample_context(spread)
    wordiest = sorted(
        Card.objects.all(),
        key=lambda c: len(c.name) + len(c.upright) + len(c.reversed) + len(str(c.keywords)),
        reverse=True,
    )
    cards = [
        DrawnCard(position=d.position, card=card, reversed=d.reversed)
        for d, card in zip(sample.cards, wordiest or [d.card for d in sample.cards], strict=False)
    ]
    long_answer = "가" * LONGEST_ANSWER_CHARS
    return PromptContext(
        question="?" * MAX_QUESTION_LENGTH,
        spread=sample.spread,
        cards=cards,
        batch=cards,
        card_results=[
            CardResult(
                position=d.position, card=d.card, orientation=d.orientation, text=long_answer
            )
            for d in cards
        ],
        overall=long_answer,
        relationships=long_answer,
    )


def render_problem(body: str) -> str | None:
    """None if the template text keeps to the allowed tags and filters, renders against a
    sample reading, and stays within the render budget against the worst input, else what
    is wrong."""
    refused = refusal(body)
    if refused:
        return refused
    if walks := unknown_attributes(lookups(body)):
        return (
            f"Templates see the reading's plain values only: {', '.join(walks)} "
            "reaches for something they do not have (a model's relation or method?)."
        )
    try:
        template = engine().from_string(body)
        rendered = render_bounded(template, sample_context().as_dict())
    except TemplateSyntaxError as exc:
        return f"The template does not compile: {exc}"
    except Exception as exc:  # noqa: BLE001 - any render failure is the staff member's to fix
        return f"The template fails to render against a sample reading: {exc}"
    if not rendered.strip():
        return "The template renders to an empty prompt."
    try:
        render_bounded(template, worst_context().as_dict())
    except Exception as exc:  # noqa: BLE001 - as above
        return (
            "The template fails with the longest question and the largest spread a reading "
            f"can have: {exc}"
        )
    return None


def template_problem(name: str) -> str | None:
    """None if `name` exists (database or file) and renders, else what is wrong."""
    stored = PromptTemplate.objects.filter(name=name).values_list("body", flat=True).first()
    if stored is not None:
        return render_problem(stored)
    try:
        source = engine().get_template(name).source
    except TemplateDoesNotExist:
        return (
            f"No prompt template named {name!r}: add it under Prompt templates "
            "or in templates/reading/."
        )
    except TemplateSyntaxError as exc:
        return f"The template {name!r} does not compile: {exc}"
    problem = render_problem(source)
    return f"{name}: {problem}" if problem else None
