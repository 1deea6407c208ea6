"""Where each card of a spread lies on the table: a grid of card-sized cells.

Staff place each position at a column and a row (spreads.models.Position) and may turn it
90° to lie across another card, as the Celtic Cross's second card crosses its first. A
spread with any position left unplaced is laid out in rows instead, in the order its cards
are laid, so a half-placed spread never shows cards on top of one another.
"""

from dataclasses import dataclass

from spreads.models import Rotation

# Cards per row when a spread has no places of its own.
ROW_LENGTH = 5


@dataclass(frozen=True)
class Place:
    index: int
    column: int
    row: int
    crosswise: bool


@dataclass(frozen=True)
class Layout:
    places: tuple[Place, ...]  # by position index
    columns: int
    rows: int

    def place_of(self, index: int) -> Place | None:
        return next((p for p in self.places if p.index == index), None)


def layout_of(positions) -> Layout:
    """The layout of a spread's positions (anything with index, column, row and rotation)."""
    positions = sorted(positions, key=lambda p: p.index)
    if positions and all(p.column and p.row for p in positions):
        places = [
            Place(p.index, p.column, p.row, p.rotation == Rotation.CROSSWISE) for p in positions
        ]
    else:
        places = [
            Place(p.index, n % ROW_LENGTH + 1, n // ROW_LENGTH + 1, False)
            for n, p in enumerate(positions)
        ]
    return Layout(
        places=tuple(places),
        columns=max((p.column for p in places), default=0),
        rows=max((p.row for p in places), default=0),
    )
