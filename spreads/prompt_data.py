"""What a prompt template is given: plain frozen values (strings, numbers, tuples of them),
built here from the reading in one place.

Templates are written by staff in the admin and run for every reading. Handed ORM objects,
a template could walk their relations out of the reading ({{ c.card.drawn_cards.all }} reaches
every reading that drew the card, their owners, password hashes and API tokens). Handed
these, it reaches the reading being written and nothing else: they have no relations, no
methods and no way back to the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spreads.question_fence import fence_question

if TYPE_CHECKING:
    from spreads.models import Card, Position, Spread
    from spreads.prompts import CardResult, DrawnCard, PromptContext


@dataclass(frozen=True)
class PromptSpread:
    slug: str
    name: str
    description: str
    card_count: int


@dataclass(frozen=True)
class PromptPosition:
    index: int
    name: str
    meaning: str


@dataclass(frozen=True)
class PromptCard:
    slug: str
    name: str
    arcana: str
    suit: str
    number: int
    keywords: tuple[str, ...]
    upright: str
    reversed: str


@dataclass(frozen=True)
class PromptDrawnCard:
    position: PromptPosition
    card: PromptCard
    reversed: bool
    orientation: str  # "upright" or "reversed"
    meaning: str  # the card's meaning in that orientation


@dataclass(frozen=True)
class PromptCardResult:
    """What phase 1 wrote about one card, handed to the later phases."""

    position: PromptPosition
    card: PromptCard
    orientation: str
    text: str


@dataclass(frozen=True)
class PromptResultGroup:
    """Text written about one card, or about several when a batch's answer could not be
    split by position: it is then shown once under all its cards, never repeated per card."""

    results: tuple[PromptCardResult, ...]
    text: str
    heading: str


def template_data(context: PromptContext) -> dict[str, object]:
    """The variables every prompt template is rendered with."""
    card_results = tuple(_card_result(r) for r in context.card_results)
    return {
        "question": fence_question(context.question),
        "spread": _spread(context.spread),
        "positions": tuple(_position(p) for p in context.positions),
        "cards": tuple(_drawn_card(d) for d in context.cards),
        "batch": tuple(_drawn_card(d) for d in context.batch),
        "card_results": card_results,
        "result_groups": _result_groups(card_results),
        "overall": str(context.overall),
        "relationships": str(context.relationships),
        "steps": tuple(str(step) for step in context.steps),
    }


def _spread(spread: Spread) -> PromptSpread:
    return PromptSpread(
        slug=str(spread.slug),
        name=str(spread.name),
        description=str(spread.description),
        card_count=int(spread.card_count or 0),
    )


def _position(position: Position) -> PromptPosition:
    return PromptPosition(
        index=int(position.index), name=str(position.name), meaning=str(position.meaning)
    )


def _card(card: Card) -> PromptCard:
    return PromptCard(
        slug=str(card.slug),
        name=str(card.name),
        arcana=str(card.arcana),
        suit=str(card.suit),
        number=int(card.number or 0),
        keywords=tuple(str(k) for k in card.keywords or ()),
        upright=str(card.upright),
        reversed=str(card.reversed),
    )


def _drawn_card(drawn: DrawnCard) -> PromptDrawnCard:
    return PromptDrawnCard(
        position=_position(drawn.position),
        card=_card(drawn.card),
        reversed=bool(drawn.reversed),
        orientation=str(drawn.orientation),
        meaning=str(drawn.meaning),
    )


def _card_result(result: CardResult) -> PromptCardResult:
    return PromptCardResult(
        position=_position(result.position),
        card=_card(result.card),
        orientation=str(result.orientation),
        text=str(result.text),
    )


def _result_groups(results: tuple[PromptCardResult, ...]) -> tuple[PromptResultGroup, ...]:
    grouped: list[list[PromptCardResult]] = []
    for result in results:
        if grouped and grouped[-1][0].text == result.text:
            grouped[-1].append(result)
        else:
            grouped.append([result])
    return tuple(
        PromptResultGroup(results=tuple(group), text=group[0].text, heading=_heading(group))
        for group in grouped
    )


def _heading(group: list[PromptCardResult]) -> str:
    """The positions a text is about, by number: the layout, sent just before the results,
    names each numbered position and its card, so the heading does not repeat them."""
    numbers = [str(r.position.index) for r in group]
    if len(numbers) == 1:
        return numbers[0]
    *first, last = numbers
    return f"{', '.join(first)} and {last}, together"


# --- What a template may look up ------------------------------------------------------------

# Every attribute the values above have, and the {% for %} loop's own.
ATTRIBUTES = (
    frozenset(
        name
        for kind in (PromptSpread, PromptPosition, PromptCard, PromptDrawnCard, PromptCardResult)
        for name in kind.__dataclass_fields__
    )
    | frozenset(PromptResultGroup.__dataclass_fields__)
    | {
        "counter",
        "counter0",
        "revcounter",
        "revcounter0",
        "first",
        "last",
        "parentloop",
    }
)


def unknown_attributes(lookups: list[str]) -> list[str]:
    """The lookups (`c.card.drawncard_set.all`) that reach for an attribute the plain values
    do not have: a model's relation, manager or method, which renders nothing at best."""
    return [
        lookup
        for lookup in lookups
        if any(not part.isdigit() and part not in ATTRIBUTES for part in lookup.split(".")[1:])
    ]
