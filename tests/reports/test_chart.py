"""The cost chart can be read without a mouse, without colour vision and on a phone."""

import re
from datetime import date
from itertools import pairwise

from reports.chart import BACKGROUND, NARROW, TASK_COLOURS, WIDE, cost_chart
from spreads.models import TaskType


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a #RRGGBB colour."""
    channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted([luminance(a), luminance(b)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_task_colour_stands_out_from_the_background_by_3_to_1():
    for task_type, colour in TASK_COLOURS.items():
        assert contrast(colour, BACKGROUND) >= 3, (task_type, contrast(colour, BACKGROUND))


def test_segments_stacked_next_to_each_other_differ_by_3_to_1():
    stack = [TASK_COLOURS[value] for value in TaskType.values]
    for lower, upper in pairwise(stack):
        assert contrast(lower, upper) >= 3, (lower, upper, contrast(lower, upper))


def test_stacked_segments_are_separated_by_a_line_of_the_background_colour():
    svg = cost_chart(
        start=date(2025, 3, 1),
        end=date(2025, 3, 1),
        by_day=[{"day": date(2025, 3, 1), "cost": 3}],
        by_day_task_type=[
            {
                "day": date(2025, 3, 1),
                "task_type": TaskType.CARD_INTERPRETATION,
                "cost": 1,
                "calls": 1,
            },
            {"day": date(2025, 3, 1), "task_type": TaskType.RELATIONSHIPS, "cost": 2, "calls": 1},
        ],
    )

    assert svg.count('class="segment"') == 2
    assert re.search(r"\.segment\{stroke:" + BACKGROUND + r";stroke-width:[1-9]", svg)


def test_text_stays_at_least_11_px_tall_at_the_narrowest_width_each_layout_is_shown():
    for layout in (WIDE, NARROW):
        assert layout.font * layout.min_width / layout.width >= 11, layout.name


def test_the_page_switches_layouts_where_the_wide_one_would_shrink_its_text(staff_client):
    page = staff_client.get("/reports/costs/").content.decode()

    assert f"@container cost-chart (max-width: {WIDE.min_width - 1}px)" in page
    assert "cost-chart-wide" in page and "cost-chart-narrow" in page
