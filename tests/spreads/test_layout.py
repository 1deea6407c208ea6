"""Where each card of a spread lies: the places staff give its positions, or rows."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from spreads.layout import layout_of
from spreads.models import Position, Rotation, Spread

pytestmark = pytest.mark.django_db


def places(slug):
    layout = layout_of(Spread.objects.get(slug=slug).positions.all())
    return {p.index: (p.column, p.row, p.crosswise) for p in layout.places}


def test_the_celtic_cross_ships_as_a_cross_of_six_beside_a_staff_of_four():
    cross = places("celtic_cross")

    present, challenge = cross[1], cross[2]
    assert challenge[:2] == present[:2] and challenge[2] and not present[2], "2 crosses 1"
    crown, foundation, past, future = cross[5], cross[3], cross[4], cross[6]
    assert crown[0] == foundation[0] == present[0] and crown[1] < present[1] < foundation[1]
    assert past[1] == future[1] == present[1] and past[0] < present[0] < future[0]
    staff = [cross[i] for i in (7, 8, 9, 10)]
    assert {column for column, _, _ in staff} == {6 - 1}, "one column, right of the cross"
    assert [row for _, row, _ in staff] == [4, 3, 2, 1], "read from the bottom up"


def test_the_three_card_spread_ships_in_a_line_and_the_horoscope_as_a_wheel():
    assert places("three_card") == {1: (1, 1, False), 2: (2, 1, False), 3: (3, 1, False)}
    wheel = places("horoscope")
    assert len(set(p[:2] for p in wheel.values())) == 12
    assert all(c in (1, 4) or r in (1, 4) for c, r, _ in wheel.values()), "on the rim"


def test_a_spread_with_a_position_left_unplaced_is_laid_out_in_rows():
    spread = Spread.objects.get(slug="celtic_cross")
    spread.positions.filter(index=7).update(column=None, row=None)

    layout = layout_of(spread.positions.all())

    assert [(p.column, p.row) for p in layout.places][:6] == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 1),
        (1, 2),
    ]
    assert not any(p.crosswise for p in layout.places)
    assert (layout.columns, layout.rows) == (5, 2)


def test_a_column_without_a_row_is_refused_with_a_message():
    spread = Spread.objects.get(slug="three_card")
    position = Position(spread=spread, index=4, name="Outcome", meaning="Where it goes.", column=4)

    with pytest.raises(ValidationError) as info:
        position.full_clean()

    assert "Give both a column and a row" in info.value.message_dict["row"][0]


def test_the_database_refuses_a_place_off_the_grid_or_an_unknown_turn():
    position = Position.objects.filter(spread__slug="three_card").first()
    for change in ({"column": 13, "row": 1}, {"column": 1, "row": None}, {"rotation": 45}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Position.objects.filter(pk=position.pk).update(**change)
    assert Rotation.CROSSWISE == 90
