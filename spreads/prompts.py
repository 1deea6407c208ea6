"""Prompt templates: find them, render them, and check them before staff save them.

A template stored in the database (PromptTemplate, edited in the admin) overrides the file
of the same name in templates/reading/. Prompts are plain text, so autoescape is off; the
querent's question reaches a template only as a variable, never as template code.
"""

from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.template import Context, Engine, TemplateDoesNotExist, TemplateSyntaxError

from spreads.models import Card, Position, PromptTemplate, Spread


@cache
def _engine() -> Engine:
    # strict about unknown tags (TemplateSyntaxError) but lenient about missing variables,
    # so one template serves every phase.
    return Engine(dirs=[settings.BASE_DIR / "templates" / "reading"], autoescape=False)


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


@dataclass
class PromptContext:
    question: str
    spread: Spread
    cards: list[DrawnCard]
    batch: list[DrawnCard] = field(default_factory=list)
    card_results: list[CardResult] = field(default_factory=list)
    overall: str = ""
    relationships: str = ""

    def as_dict(self) -> dict:
        return {
            "question": self.question,
            "spread": self.spread,
            "cards": self.cards,
            "batch": self.batch,
            "card_results": self.card_results,
            "overall": self.overall,
            "relationships": self.relationships,
        }


def template_exists(name: str) -> bool:
    if PromptTemplate.objects.filter(name=name).exists():
        return True
    try:
        _engine().get_template(name)
    except TemplateDoesNotExist:
        return False
    except TemplateSyntaxError:
        return True
    return True


def template_name_for(spread: Spread, kind: str) -> str:
    """The spread's chosen template, else <slug>_<kind>.txt, else the generic <kind>.txt."""
    chosen = spread.template_field(kind)
    if chosen:
        return chosen
    specific = f"{spread.slug}_{kind}.txt"
    return specific if template_exists(specific) else f"{kind}.txt"


def render_prompt(name: str, context: PromptContext) -> str:
    stored = PromptTemplate.objects.filter(name=name).values_list("body", flat=True).first()
    template = _engine().from_string(stored) if stored is not None else _engine().get_template(name)
    return template.render(Context(context.as_dict(), autoescape=False)).strip()


def sample_context(spread: Spread | None = None) -> PromptContext:
    """A plausible reading (first cards of the deck, alternating orientation) to render a
    template against before it is saved."""
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
            text=f"{d.card.name} in {d.position.name}: {d.meaning}",
        )
        for d in cards
    ]
    return PromptContext(
        question="What should I focus on this year?",
        spread=spread,
        cards=cards,
        batch=cards,
        card_results=results,
        overall="A sample overall reading.",
        relationships="A sample look at how the cards relate.",
    )


def render_problem(body: str) -> str | None:
    """None if the template text renders against a sample reading, else what is wrong."""
    try:
        rendered = (
            _engine()
            .from_string(body)
            .render(Context(sample_context().as_dict(), autoescape=False))
        )
    except TemplateSyntaxError as exc:
        return f"The template does not compile: {exc}"
    except Exception as exc:  # noqa: BLE001 - any render failure is the staff member's to fix
        return f"The template fails to render against a sample reading: {exc}"
    if not rendered.strip():
        return "The template renders to an empty prompt."
    return None


def template_problem(name: str) -> str | None:
    """None if `name` exists (database or file) and renders, else what is wrong."""
    stored = PromptTemplate.objects.filter(name=name).values_list("body", flat=True).first()
    if stored is not None:
        return render_problem(stored)
    try:
        source = _engine().get_template(name).source
    except TemplateDoesNotExist:
        return (
            f"No prompt template named {name!r}: add it under Prompt templates "
            "or in templates/reading/."
        )
    except TemplateSyntaxError as exc:
        return f"The template {name!r} does not compile: {exc}"
    problem = render_problem(source)
    return f"{name}: {problem}" if problem else None
