"""The fixed three-card reading budget tests create, and what it asks of a budget."""

from decimal import Decimal

from budgets.services import Admission
from readings.models import ReadingMode
from readings.services import (
    CardChoice,
    estimate_admission,
    reading_estimate,
    reading_validate,
)

THREE_CARDS = [CardChoice("the-fool"), CardChoice("the-magician"), CardChoice("the-star")]


def admission_of_three_cards(owner=None, mode=ReadingMode.STANDARD) -> Admission:
    """What the fixed three-card reading the tests create asks of a budget (same question,
    same cards, so every one asks the same)."""
    request = reading_validate(
        owner=owner, spread="three_card", question="Race?", cards=THREE_CARDS
    )
    return estimate_admission(reading_estimate(request, mode), mode)


def worst_case_of_three_cards(owner=None) -> Decimal:
    return admission_of_three_cards(owner).worst_case_usd
