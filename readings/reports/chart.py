"""The cost-per-day chart, stacked by task type, drawn on the server as inline SVG.

No JavaScript and nothing fetched: the page works offline and in a screenshot. Each bar
segment carries a <title>, which browsers show as a tooltip.
"""

import math
from datetime import date, timedelta
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from allocation.models import TaskType

# Okabe-Ito colours: told apart by colour-blind readers too.
TASK_COLOURS = {
    TaskType.CARD_INTERPRETATION: "#0072B2",
    TaskType.OVERALL_READING: "#E69F00",
    TaskType.RELATIONSHIPS: "#009E73",
    TaskType.ADVICE: "#CC79A7",
}
OTHER_COLOUR = "#999999"

WIDTH, HEIGHT = 1100, 380
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 20, 80
MAX_X_LABELS = 16
LEGEND_SPACING = 190
Y_TICKS = 5


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


def cost_chart(
    *, start: date, end: date, by_day: list[dict], by_day_task_type: list[dict]
) -> SafeString:
    """SVG markup for a bar per day from start to end, one segment per task type.

    by_day gives each day's total (the bar's height, summed by Postgres), by_day_task_type
    the segments; days without calls get no bar.
    """
    days = days_between(start, end)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    day_max = max((float(row["cost"]) for row in by_day), default=0.0)
    step = nice_step(day_max)
    y_top = step * max(1, math.ceil(day_max / step)) if day_max > 0 else step * Y_TICKS
    band = plot_w / len(days)
    bar_w = max(1.0, band * 0.8)
    index = {day: n for n, day in enumerate(days)}

    def y_of(value: float) -> float:
        return TOP + plot_h - value / y_top * plot_h

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
                LEFT,
                y,
                LEFT + plot_w,
                y,
                LEFT - 8,
                y + 4,
                money_tick(value, step),
            )
        )

    # Bar segments, stacked in task-type order from the axis up.
    stacked: dict[date, float] = {}
    order = {value: n for n, value in enumerate(TaskType.values)}
    for row in sorted(by_day_task_type, key=lambda r: (r["day"], order.get(r["task_type"], 99))):
        if row["day"] not in index:
            continue
        cost = float(row["cost"] or 0)
        base = stacked.get(row["day"], 0.0)
        stacked[row["day"]] = base + cost
        label = TaskType(row["task_type"]).label if row["task_type"] in order else row["task_type"]
        x = LEFT + index[row["day"]] * band + (band - bar_w) / 2
        y_low, y_high = y_of(base), y_of(base + cost)
        parts.append(
            _svg(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                "<title>{} · {}: ${} ({} call{})</title></rect>",
                x,
                y_high,
                bar_w,
                max(0.0, y_low - y_high),
                TASK_COLOURS.get(row["task_type"], OTHER_COLOUR),
                row["day"].isoformat(),
                label,
                f"{Decimal(row['cost'] or 0):.6f}",
                row["calls"],
                "" if row["calls"] == 1 else "s",
            )
        )

    # Day labels under the axis, thinned out so they never overlap.
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    for n, day in enumerate(days):
        if n % every:
            continue
        x = LEFT + n * band + band / 2
        parts.append(
            _svg(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>'
                '<text x="{}" y="{}" class="xlabel">{}</text>',
                x,
                TOP + plot_h,
                x,
                TOP + plot_h + 4,
                x,
                TOP + plot_h + 18,
                day.strftime("%b %d"),
            )
        )

    if not by_day:
        parts.append(
            _svg(
                '<text x="{}" y="{}" class="empty">No calls in this range</text>',
                LEFT + plot_w / 2,
                TOP + plot_h / 2,
            )
        )

    legend = format_html_join(
        "",
        '<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'
        '<text x="{}" y="{}" class="legend">{}</text>',
        (
            (x, HEIGHT - 22, TASK_COLOURS[value], x + 18, HEIGHT - 12, label)
            for x, (value, label) in zip(
                range(LEFT, WIDTH, LEGEND_SPACING), TaskType.choices, strict=False
            )
        ),
    )

    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" '
        'role="img" aria-labelledby="cost-chart-title" class="cost-chart">'
        '<title id="cost-chart-title">Cost per day (USD), {start} to {end}, '
        "stacked by task type</title>"
        "<style>"
        ".grid{{stroke:#ddd;stroke-width:1}} .axis{{stroke:#666;stroke-width:1}}"
        " text{{font:12px sans-serif;fill:#333}} .ylabel{{text-anchor:end}}"
        " .xlabel{{text-anchor:middle}} .empty{{text-anchor:middle;fill:#888;font-size:16px}}"
        " .axis-title{{font-weight:bold}}"
        "</style>"
        "{body}"
        '<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        '<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>'
        '<text x="14" y="{mid}" class="axis-title" '
        'transform="rotate(-90 14 {mid})" text-anchor="middle">Cost (USD)</text>'
        '<text x="{xmid}" y="{xtitle}" class="axis-title" text-anchor="middle">Day (UTC)</text>'
        "{legend}"
        "</svg>",
        w=WIDTH,
        h=HEIGHT,
        start=start.isoformat(),
        end=end.isoformat(),
        body=mark_safe("".join(parts)),  # every part went through format_html
        left=LEFT,
        right=LEFT + plot_w,
        top=TOP,
        bottom=TOP + plot_h,
        mid=TOP + plot_h / 2,
        xmid=LEFT + plot_w / 2,
        xtitle=TOP + plot_h + 40,
        legend=legend,
    )
