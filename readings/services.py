"""Writes that start readings: validation lives here, so the API, the `read` command and the
bench share one set of rules and messages."""

import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from readings.models import DrawnCard, Reading
from spreads.models import Card, Spread

MAX_QUESTION_LENGTH = 1000


@dataclass(frozen=True)
class CardChoice:
    """A card the caller drew themselves: its slug (or name) and orientation."""

    card: str
    reversed: bool = False


def draw_cards(count: int, *, reversal_probability: float = 0.5) -> list[CardChoice]:
    """Draw without replacement from a cryptographically shuffled deck."""
    deck = list(Card.objects.values_list("slug", flat=True))
    rng = secrets.SystemRandom()
    chosen = rng.sample(deck, count)
    return [CardChoice(card=slug, reversed=rng.random() < reversal_probability) for slug in chosen]


def resolve_spread(slug: str) -> Spread:
    spread = Spread.objects.filter(slug=slug).first()
    if spread is None:
        raise ValidationError({"spread": f"No spread called {slug!r}."})
    if not spread.is_active:
        raise ValidationError({"spread": f"The spread {slug!r} is not active."})
    return spread


def validate_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise ValidationError({"question": "Ask a question: it cannot be empty."})
    if len(question) > MAX_QUESTION_LENGTH:
        raise ValidationError(
            {
                "question": f"Keep the question under {MAX_QUESTION_LENGTH} characters "
                f"(it has {len(question)})."
            }
        )
    return question


def resolve_cards(spread: Spread, choices: list[CardChoice]) -> list[tuple[Card, bool]]:
    if len(choices) != spread.card_count:
        raise ValidationError(
            {"cards": f"{spread.name} takes {spread.card_count} cards; {len(choices)} were given."}
        )
    wanted = [c.card.strip() for c in choices]
    by_key = {}
    for card in Card.objects.all():
        by_key[card.slug] = card
        by_key[card.name.lower()] = card
    unknown = [w for w in wanted if w.lower() not in by_key and w not in by_key]
    if unknown:
        raise ValidationError({"cards": f"Unknown cards: {', '.join(unknown)}."})
    cards = [by_key.get(w) or by_key[w.lower()] for w in wanted]
    seen, duplicates = set(), []
    for card in cards:
        if card.pk in seen:
            duplicates.append(card.name)
        seen.add(card.pk)
    if duplicates:
        raise ValidationError(
            {"cards": f"Each card can appear once: {', '.join(duplicates)} repeated."}
        )
    return [(card, choice.reversed) for card, choice in zip(cards, choices, strict=True)]


def reading_create(
    *, owner=None, spread: str | Spread, question: str, cards: list[CardChoice] | None = None
) -> Reading:
    """Create a queued reading with its drawn cards (drawn here when the caller gives none).
    Every field's problem is reported at once, not only the first one found."""
    errors: dict[str, list[str]] = {}
    try:
        spread = spread if isinstance(spread, Spread) else resolve_spread(spread)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        question = validate_question(question)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if "spread" not in errors:
        try:
            drawn = resolve_cards(
                spread, cards if cards is not None else draw_cards(spread.card_count)
            )
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    positions = list(spread.positions.order_by("index"))
    if len(positions) != spread.card_count:
        raise ValidationError(
            {
                "spread": f"{spread.name} is misconfigured: {len(positions)} positions for "
                f"{spread.card_count} cards."
            }
        )
    with transaction.atomic():
        reading = Reading.objects.create(owner=owner, spread=spread, question=question)
        DrawnCard.objects.bulk_create(
            DrawnCard(reading=reading, position=position, card=card, reversed=is_reversed)
            for position, (card, is_reversed) in zip(positions, drawn, strict=True)
        )
    return reading
