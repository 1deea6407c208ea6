"""The cost-per-day chart, stacked by task type, drawn on the server as inline SVG.

No JavaScript and nothing fetched: the page works offline and in a screenshot. Each bar
segment carries a <title> for a mouse; the table drawn under the chart (costs.html) holds the
same values for the keyboard and screen readers.

Two layouts of the same chart: a wide one for desks and a narrow one for phones, each drawn
in its own coordinates so its text stays at least 11 px tall when the browser scales it down
to the screen (the page's CSS shows one of them).
"""

import math
from dataclasses import dataclass
from datetime import date, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from allocation.money import usd_total
from spreads.models import TaskType

# Dark and light colours alternate in stacking order, so neighbouring segments differ by at
# least 3:1 in contrast, and each is at least 3:1 against the white background (WCAG 1.4.11;
# tests/reports/test_chart.py checks both). Two task types a missing one brings
# together are kept apart by the white separator drawn between stacked segments.
TASK_COLOURS = {
    TaskType.CARD_INTERPRETATION: "#17357A",  # navy
    TaskType.OVERALL_READING: "#E17700",  # orange
    TaskType.RELATIONSHIPS: "#00432C",  # dark green
    TaskType.ADVICE: "#DC5FAE",  # pink
}
OTHER_COLOUR = "#595959"
BACKGROUND = "#FFFFFF"
SEPARATOR_WIDTH = 2  # white lines between stacked segments, in the layout's units
Y_TICKS = 5


@dataclass(frozen=True)
class Layout:
    """The chart's coordinate system. `font` is in these units: drawn `min_width` CSS pixels
    wide, the narrowest the page shows this layout at, text is font * min_width / width px
    tall."""

    name: str
    min_width: int
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    max_x_labels: int
    legend_columns: int
    font: int
    axis_titles: bool


# The page draws the wide layout in a box at least 900 px wide (text 14 x 900/1100 = 11.5 px)
# and the narrow one below that, at most 480 px wide: on a 390 px phone it gets about 360 px.
WIDE = Layout("wide", 900, 1100, 380, 90, 20, 20, 80, 16, 4, 14, True)
NARROW = Layout("narrow", 340, 360, 330, 58, 8, 14, 96, 4, 2, 13, False)


def nice_step(maximum: float, ticks: int = Y_TICKS) -> float:
    """A 1, 2 or 5 times a power of ten step that splits 0..maximum into about `ticks`."""
    if maximum <= 0:
        return 1.0
    raw = maximum / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power  # pragma: no cover - the loop always returns


def money_tick(value: float, step: float) -> str:
    decimals = min(6, max(2, -math.floor(math.log10(step)))) if step > 0 else 2
    return f"${value:,.{decimals}f}"


def _svg(template: str, *args) -> SafeString:
    """format_html with coordinates rounded to two decimals, to keep the markup small."""
    return format_html(template, *(f"{a:.2f}" if isinstance(a, float) else a for a in args))


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def task_label(task_type: str) -> str:
    return TaskType(task_type).label if task_type in TaskType.values else task_type


def cost_chart(
    *,
    start: date,
    end: date,
    by_day: list[dict],
    by_day_task_type: list[dict],
    layout: Layout = WIDE,
) -> SafeString:
    """SVG markup for a bar per day from start to end, one segment per task type.

    by_day gives each day's total (the bar's height, summed by Postgres), by_day_task_type
    the segments; days without calls get no bar.
    """
    lo = layout
    days = days_between(start, end)
    plot_w, plot_h = lo.width - lo.left - lo.right, lo.height - lo.top - lo.bottom
    day_max = max((float(row["cost"]) for row in by_day), default=0.0)
    step = nice_step(day_max)
    y_top = step * max(1, math.ceil(day_max / step)) if day_max > 0 else step * Y_TICKS
    band = plot_w / len(days)
    bar_w = max(1.0, band * 0.8)
    index = {day: n for n, day in enumerate(days)}

    def y_of(value: float) -> float:
        return lo.top + plot_h - value / y_top * plot_h

    parts = []
    # Horizontal grid lines with money labels.
    ticks = round(y_top / step)
    for n in range(ticks + 1):
        value = n * step
        y = y_of(value)
        parts.append(
            _svg(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="ylabel">{}</text>',
                lo.left,
                y,
                lo.left + plot_w,
                y,
                lo.left - 6,
                y + lo.font / 3,
                money_tick(value, step),
            )
        )

    # Bar segments, stacked in task-type order from the axis up, each outlined in white so
    # that touching segments stay apart whatever their colours.
    stacked: dict[date, float] = {}
    order = {value: n for n, value in enumerate(TaskType.values)}
    for row in sorted(by_day_task_type, key=lambda r: (r["day"], order.get(r["task_type"], 99))):
        if row["day"] not in index:
            continue
        cost = float(row["cost"] or 0)
        base = stacked.get(row["day"], 0.0)
        stacked[row["day"]] = base + cost
        x = lo.left + index[row["day"]] * band + (band - bar_w) / 2
        y_low, y_high = y_of(base), y_of(base + cost)
        parts.append(
            _svg(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" class="segment">'
                "<title>{} · {}: {} ({} call{})</title></rect>",
                x,
                y_high,
                bar_w,
                max(0.0, y_low - y_high),
                TASK_COLOURS.get(row["task_type"], OTHER_COLOUR),
                row["day"].isoformat(),
                task_label(row["task_type"]),
                usd_total(row["cost"] or 0),
                row["calls"],
                "" if row["calls"] == 1 else "s",
            )
        )

    # Day labels under the axis, thinned out so they never overlap.
    every = max(1, math.ceil(len(days) / lo.max_x_labels))
    for n, day in enumerate(days):
        if n % every:
            continue
        x = lo.left + n * band + band / 2
        parts.append(
            _svg(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>'
                '<text x="{}" y="{}" class="xlabel">{}</text>',
                x,
                lo.top + plot_h,
                x,
                lo.top + plot_h + 4,
                x,
                lo.top + plot_h + 4 + lo.font * 1.2,
                day.strftime("%b %d"),
            )
        )

    if not by_day:
        parts.append(
            _svg(
                '<text x="{}" y="{}" class="empty">No calls in this range</text>',
                lo.left + plot_w / 2,
                lo.top + plot_h / 2,
            )
        )

    column_w = (lo.width - lo.left) / lo.legend_columns
    legend_rows = math.ceil(len(TaskType.choices) / lo.legend_columns)
    legend_top = lo.height - legend_rows * lo.font * 1.6 - 4
    legend = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
        '<text x="{}" y="{}" class="legend">{}</text>',
        (
            (
                f"{lo.left + (n % lo.legend_columns) * column_w:.2f}",
                f"{legend_top + (n // lo.legend_columns) * lo.font * 1.6:.2f}",
                lo.font,
                lo.font,
                TASK_COLOURS[value],
                f"{lo.left + (n % lo.legend_columns) * column_w + lo.font * 1.5:.2f}",
                f"{legend_top + (n // lo.legend_columns) * lo.font * 1.6 + lo.font * 0.85:.2f}",
                label,
            )
            for n, (value, label) in enumerate(TaskType.choices)
        ),
    )
    axis_titles = (
        format_html(
            '<text x="14" y="{mid}" class="axis-title" transform="rotate(-90 14 {mid})">'
            "Cost (USD)</text>"
            '<text x="{xmid}" y="{xtitle}" class="axis-title">Day (UTC)</text>',
            mid=f"{lo.top + plot_h / 2:.2f}",
            xmid=f"{lo.left + plot_w / 2:.2f}",
            xtitle=f"{lo.top + plot_h + 4 + lo.font * 2.8:.2f}",
        )
        if lo.axis_titles
        else ""
    )

    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" '
        'role="img" aria-labelledby="cost-chart-title-{name}" class="cost-chart cost-chart-{name}">'
        '<title id="cost-chart-title-{name}">Cost per day (USD), {start} to {end}, '
        "stacked by task type; the table under the chart lists the same values</title>"
        "<style>"
        ".grid{{stroke:#d0d0d0;stroke-width:1}} .axis{{stroke:#595959;stroke-width:1}}"
        " text{{font:{font}px sans-serif;fill:#333}} .ylabel{{text-anchor:end}}"
        " .xlabel{{text-anchor:middle}} .empty{{text-anchor:middle;fill:#595959}}"
        " .axis-title{{font-weight:bold;text-anchor:middle}}"
        " .segment{{stroke:{background};stroke-width:{separator}}}"
        "</style>"
        '<rect width="{w}" height="{h}" fill="{background}"/>'
        "{body}"
        '<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        '<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>'
        "{axis_titles}{legend}"
        "</svg>",
        w=lo.width,
        h=lo.height,
        name=lo.name,
        font=lo.font,
        background=BACKGROUND,
        separator=SEPARATOR_WIDTH,
        start=start.isoformat(),
        end=end.isoformat(),
        body=mark_safe("".join(parts)),  # every part went through format_html
        left=lo.left,
        right=lo.left + plot_w,
        top=lo.top,
        bottom=lo.top + plot_h,
        axis_titles=axis_titles,
        legend=legend,
    )


def day_task_table(*, start: date, end: date, by_day: list[dict], by_day_task_type: list[dict]):
    """The chart's values as rows: each day with calls, its cost per task type and in all."""
    costs: dict[tuple, object] = {(r["day"], r["task_type"]): r["cost"] for r in by_day_task_type}
    return [
        {
            "day": row["day"],
            "costs": [costs.get((row["day"], value)) for value in TaskType.values],
            "cost": row["cost"],
            "calls": row["calls"],
        }
        for row in by_day
        if start <= row["day"] <= end
    ]
