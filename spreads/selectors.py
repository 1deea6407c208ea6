"""Reads of spreads and the deck that every new reading makes: the spread by its slug, its
positions in order and the 78 cards. Staff edit them rarely, so they are read at most once per
FRESH_S per process (allocation/staff_config.py) and afresh here after an edit."""

from allocation.staff_config import StaffTable
from spreads.models import Card, Position, Spread


def _positions_by_spread(positions) -> dict[int, tuple[Position, ...]]:
    found: dict[int, list[Position]] = {}
    for position in positions.order_by("spread_id", "index"):
        found.setdefault(position.spread_id, []).append(position)
    return {spread_id: tuple(rows) for spread_id, rows in found.items()}


_spreads = StaffTable(Spread, lambda rows: {spread.slug: spread for spread in rows})
_positions = StaffTable(Position, _positions_by_spread)
_deck = StaffTable(Card, lambda rows: tuple(rows.order_by("pk")))


def spread_by_slug(slug: str) -> Spread | None:
    return _spreads.get().get(slug)


def spread_positions(spread: Spread) -> list[Position]:
    """The spread's positions by index."""
    return list(_positions.get().get(spread.pk, ()))


def deck() -> tuple[Card, ...]:
    return _deck.get()
