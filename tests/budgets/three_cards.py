"""The fixed three-card reading budget tests create, and its worst case."""

from decimal import Decimal

from readings.services import CardChoice, reading_estimate, reading_validate

THREE_CARDS = [CardChoice("the-fool"), CardChoice("the-magician"), CardChoice("the-star")]


def worst_case_of_three_cards(owner=None) -> Decimal:
    """The worst case of the fixed three-card reading the tests create (same question,
    same cards, so every one reserves the same)."""
    request = reading_validate(
        owner=owner, spread="three_card", question="Race?", cards=THREE_CARDS
    )
    return reading_estimate(request).worst_case_usd
