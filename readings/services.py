"""Writes that start readings: validation lives here, so the API, the `read` command and the
bench share one set of rules and messages."""

import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from allocation.allocator import AllocationError, get_allocator
from allocation.pricing import price_problem
from budgets.models import CostEstimate
from budgets.selectors import budgets_applying, quota_for
from budgets.services import Admission, reserve_for_reading, reserve_for_retry
from readings import budgeting, live
from readings.estimate_history import task_key
from readings.estimates import EstimateError, ReadingEstimate, estimate_reading
from readings.languages import validate_language
from readings.models import (
    DrawnCard,
    Language,
    Reading,
    ReadingMode,
    ReadingStatus,
    TaskStatus,
)
from readings.signals import reading_submitted
from spreads import selectors
from spreads.models import DECK_SIZE, Card, Position, Spread, TaskType
from spreads.prompts import MAX_QUESTION_LENGTH
from spreads.prompts import DrawnCard as PromptCard


@dataclass(frozen=True)
class CardChoice:
    """A card the caller drew themselves: its slug (or name) and orientation."""

    card: str
    reversed: bool = False


def draw_cards(count: int, *, reversal_probability: float = 0.5) -> list[CardChoice]:
    """Draw without replacement from a cryptographically shuffled deck."""
    deck = [card.slug for card in selectors.deck()]
    rng = secrets.SystemRandom()
    chosen = rng.sample(deck, count)
    return [CardChoice(card=slug, reversed=rng.random() < reversal_probability) for slug in chosen]


def resolve_spread(slug: str) -> Spread:
    spread = selectors.spread_by_slug(slug)
    if spread is None:
        raise ValidationError({"spread": _("No spread called %(slug)s.") % {"slug": repr(slug)}})
    if not spread.is_active:
        raise ValidationError(
            {"spread": _("The spread %(slug)s is not active.") % {"slug": repr(slug)}}
        )
    return spread


def validate_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise ValidationError({"question": _("Ask a question: it cannot be empty.")})
    if len(question) > MAX_QUESTION_LENGTH:
        raise ValidationError(
            {
                "question": _("Keep the question under %(max)d characters (it has %(length)d).")
                % {"max": MAX_QUESTION_LENGTH, "length": len(question)}
            }
        )
    return question


def resolve_cards(spread: Spread, choices: list[CardChoice]) -> list[tuple[Card, bool]]:
    if len(choices) != spread.card_count:
        raise ValidationError(
            {
                "cards": _("%(spread)s takes %(count)d cards; %(given)d were given.")
                % {"spread": spread.name, "count": spread.card_count, "given": len(choices)}
            }
        )
    wanted = [c.card.strip() for c in choices]
    by_key = {}
    for card in selectors.deck():
        by_key[card.slug] = card
        by_key[card.name.lower()] = card
    unknown = [w for w in wanted if w.lower() not in by_key and w not in by_key]
    if unknown:
        raise ValidationError(
            {"cards": _("Unknown cards: %(cards)s.") % {"cards": ", ".join(unknown)}}
        )
    cards = [by_key.get(w) or by_key[w.lower()] for w in wanted]
    seen, duplicates = set(), []
    for card in cards:
        if card.pk in seen:
            duplicates.append(card.name)
        seen.add(card.pk)
    if duplicates:
        raise ValidationError(
            {
                "cards": _("Each card can appear once: %(cards)s repeated.")
                % {"cards": ", ".join(duplicates)}
            }
        )
    return [(card, choice.reversed) for card, choice in zip(cards, choices, strict=True)]


@dataclass(frozen=True)
class ReadingRequest:
    """A reading's inputs, checked: what creating it and estimating it both start from."""

    owner: object
    spread: Spread
    question: str
    drawn: list[tuple[Position, Card, bool]]

    @property
    def prompt_cards(self) -> list[PromptCard]:
        return [PromptCard(position=p, card=c, reversed=r) for p, c, r in self.drawn]


def reading_validate(
    *, owner=None, spread: str | Spread, question: str, cards: list[CardChoice] | None = None
) -> ReadingRequest:
    """Check a reading's inputs (drawing its cards when the caller gives none). Every field's
    problem is reported at once, not only the first one found."""
    errors: dict[str, list[str]] = {}
    try:
        spread = spread if isinstance(spread, Spread) else resolve_spread(spread)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        question = validate_question(question)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if "spread" not in errors and not 1 <= spread.card_count <= DECK_SIZE:
        # Saved before the deck bound existed (or by raw SQL): refuse rather than fail to draw.
        errors["spread"] = [
            f"{spread.name} is misconfigured: {spread.card_count} cards, but the deck has "
            f"{DECK_SIZE}."
        ]
    if "spread" not in errors:
        try:
            drawn = resolve_cards(
                spread, cards if cards is not None else draw_cards(spread.card_count)
            )
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    positions = selectors.spread_positions(spread)
    if len(positions) != spread.card_count or spread.card_count > DECK_SIZE:
        raise ValidationError(
            {
                "spread": f"{spread.name} is misconfigured: {len(positions)} positions for "
                f"{spread.card_count} cards."
            }
        )
    return ReadingRequest(
        owner=owner,
        spread=spread,
        question=question,
        drawn=[
            (position, card, is_reversed)
            for position, (card, is_reversed) in zip(positions, drawn, strict=True)
        ],
    )


def reading_estimate(
    request: ReadingRequest,
    mode: str = ReadingMode.STANDARD,
    language: str = Language.ENGLISH,
) -> ReadingEstimate:
    """What the reading is expected to cost in `mode` and `language` and its worst case;
    ValidationError when it cannot be priced (or the mode or language is not available)."""
    mode = validate_mode(mode, request.spread)
    validate_language(language)
    try:
        return estimate_reading(
            spread=request.spread,
            question=request.question,
            cards=request.prompt_cards,
            batched=mode == ReadingMode.ECONOMY,
            language=language,
        )
    except EstimateError as exc:
        raise ValidationError({"spread": str(exc)}) from None


def validate_mode(mode: str, spread: Spread) -> str:
    """A known mode; for economy, every allocated model must have a Message Batches price
    (checked now: a batch's results are paid for before they could be priced)."""
    if mode not in ReadingMode.values:
        allowed = ", ".join(f'"{m}"' for m in ReadingMode.values)
        raise ValidationError({"mode": f"Unknown mode {mode!r}: use one of {allowed}."})
    if mode == ReadingMode.ECONOMY:
        allocator = get_allocator()
        for task_type in TaskType.values:
            try:
                model = allocator.get_config(task_type, spread=spread).model
            except AllocationError:
                continue  # the reading fails with the allocation's own message, as always
            if problem := price_problem(model, batched=True):
                raise ValidationError({"mode": f"Economy is not available: {problem}"})
    return mode


def governed_by_budgets(owner, spread: Spread) -> bool:
    """Whether a reading of `owner`'s on `spread` must hold its worst case against budgets."""
    if quota_for(owner).exempt_from_budgets:
        return False
    return bool(budgets_applying(owner=owner, spread=spread))


def reading_create(
    *,
    owner=None,
    spread: str | Spread,
    question: str,
    cards: list[CardChoice] | None = None,
    mode: str = ReadingMode.STANDARD,
    language: str = Language.ENGLISH,
    submitted: bool = False,
) -> Reading:
    """Create a queued reading with its drawn cards, its cost estimate and its reservation
    against every budget that applies, in one transaction: a reading a budget refuses
    (BudgetExceeded) leaves nothing behind. The caller runs it itself, or hands it to the
    worker: `submitted` does that in the same transaction (submit), as the API and the
    querent's page do, so a POST commits once."""
    validate_language(language)
    request = reading_validate(owner=owner, spread=spread, question=question, cards=cards)
    mode = validate_mode(mode, request.spread)
    governed = governed_by_budgets(owner, request.spread)
    try:
        estimate = reading_estimate(request, mode, language)
    except ValidationError:
        if governed:
            raise  # no reservation can be made for a cost nobody can price
        # The engine fails such a reading with the same message, as it always has.
        estimate = None
    with transaction.atomic():
        reading = Reading.objects.create(
            owner=owner,
            spread=request.spread,
            question=request.question,
            mode=mode,
            language=language,
        )
        DrawnCard.objects.bulk_create(
            DrawnCard(reading=reading, position=position, card=card, reversed=is_reversed)
            for position, card, is_reversed in request.drawn
        )
        if estimate is not None:
            kept = CostEstimate.objects.create(
                reading=reading,
                expected_usd=estimate.expected_usd,
                worst_case_usd=estimate.worst_case_usd,
                sources=estimate.sources(),
            )
        if governed:
            reserve_for_reading(
                reading=reading,
                admission=budgeting.admission(kept, economy=mode == ReadingMode.ECONOMY),
            )
        if submitted:
            submit(reading)
    return reading


def estimate_admission(estimate: ReadingEstimate, mode: str) -> Admission:
    """What creating a reading of this estimate would ask of each budget."""
    unsaved = CostEstimate(
        expected_usd=estimate.expected_usd,
        worst_case_usd=estimate.worst_case_usd,
        sources=estimate.sources(),
    )
    return budgeting.admission(unsaved, economy=mode == ReadingMode.ECONOMY)


class RetryRefused(Exception):
    """The reading cannot be retried; the message says why, to its owner."""


def reading_retry(reading: Reading) -> Reading:
    """Queue a failed reading again. Only its unfinished tasks run (the engine resumes it as
    after a crash), so no finished task is paid twice; what is left of it is admitted by the
    budgets that apply now, as a new reading is (BudgetExceeded if one cannot take it). The
    caller hands it to the worker (submit)."""
    with transaction.atomic():
        reading = Reading.objects.select_for_update().select_related("spread").get(pk=reading.pk)
        if reading.status != ReadingStatus.FAILED:
            raise RetryRefused(
                _("Only a failed reading can be retried; this one is %(status)s.")
                % {"status": reading.get_status_display().lower()}
            )
        if reading.mode == ReadingMode.ECONOMY:
            raise RetryRefused(_("An economy reading cannot be retried: ask the question again."))
        if governed_by_budgets(reading.owner, reading.spread):
            estimate = CostEstimate.objects.filter(reading=reading).first()
            if estimate is None:
                raise RetryRefused(_("This reading has no cost estimate: ask the question again."))
            done = [
                task_key(task_type, batch_index)
                for task_type, batch_index in reading.tasks.filter(
                    status=TaskStatus.DONE
                ).values_list("task_type", "batch_index")
            ]
            reserve_for_retry(
                reading=reading,
                admission=budgeting.admission(estimate, economy=False, tasks_done=done),
            )
        # Its last run's reading_finished event goes: a viewer waits for this run's events.
        live.compact(reading.pk)
        reading.status = ReadingStatus.QUEUED
        reading.error = ""
        reading.finished_at = None
        reading.dispatched_at = None
        reading.held_by = ""
        reading.save(update_fields=["status", "error", "finished_at", "dispatched_at", "held_by"])
    return reading


def submit(reading: Reading) -> None:
    """Hand a created reading to the worker, whose fair queue decides when it runs
    (readings/signals.py: readings does not import the runtime that runs it)."""
    reading_submitted.send(Reading, reading=reading)
