"""The cost summary selector: what the reports add up, over which days, with which filters."""

from datetime import date
from decimal import Decimal

import pytest

from allocation.models import CallOutcome
from readings.models import Reading
from reports.selectors import cost_rows, cost_summary, default_range
from spreads.models import Spread, TaskType
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

MARCH_1, MARCH_3 = date(2025, 3, 1), date(2025, 3, 3)


@pytest.fixture
def calls():
    """Six calls from 1 to 3 March 2025 (UTC), and one just outside each end."""
    celtic = Spread.objects.get(slug="celtic_cross")
    three = Spread.objects.get(slug="three_card")
    first = Reading.objects.create(spread=celtic, question="Will it rain?")
    second = Reading.objects.create(spread=three, question="Which road?")
    made = {
        "card_1st": make_call(
            at("2025-03-01 00:00:00"), cost="0.00120000", spread=celtic, reading=first,
            input_tokens=1000, output_tokens=200, cache_read_tokens=50,
        ),
        "overall_1st": make_call(
            at("2025-03-01 12:00"), cost="0.01500000", spread=celtic, reading=first,
            task_type=TaskType.OVERALL_READING, model="claude-sonnet-4-5",
            input_tokens=2000, output_tokens=600, cache_write_tokens=100,
        ),
        "card_2nd": make_call(
            at("2025-03-02 09:30"), cost="0.00080000", spread=three, reading=second,
            input_tokens=800, output_tokens=100,
        ),
        "card_2nd_429": make_call(
            at("2025-03-02 09:31"), spread=three, reading=second,
            outcome=CallOutcome.RATE_LIMITED,
        ),
        "advice_2nd_fallback": make_call(
            at("2025-03-03 23:59:59.999999"), cost="0.00250000", spread=three, reading=second,
            task_type=TaskType.ADVICE, is_fallback=True, input_tokens=500, output_tokens=300,
        ),
        "relationships_529": make_call(
            at("2025-03-03 10:00"), spread=celtic, task_type=TaskType.RELATIONSHIPS,
            model="claude-sonnet-4-0", outcome=CallOutcome.OVERLOADED,
        ),
    }  # fmt: skip
    make_call(at("2025-02-28 23:59:59.999999"), cost="1.00000000")
    make_call(at("2025-03-04 00:00:00"), cost="2.00000000")
    made["readings"] = (first, second)
    return made


def by(rows, key):
    return {row[key]: row for row in rows}


def test_it_adds_up_cost_tokens_and_calls_over_the_range(calls):
    totals = cost_summary(start=MARCH_1, end=MARCH_3)["totals"]

    assert totals["cost"] == Decimal("0.0012") + Decimal("0.015") + Decimal("0.0008") + Decimal(
        "0.0025"
    )
    assert totals["cost"] == Decimal("0.01950000")
    assert totals["calls"] == 6
    assert totals["tokens_in"] == 1000 + 2000 + 800 + 500
    assert totals["tokens_out"] == 200 + 600 + 100 + 300
    assert totals["tokens_cache_read"] == 50
    assert totals["tokens_cache_write"] == 100


def test_it_counts_rate_limit_hits_fallbacks_and_errors(calls):
    totals = cost_summary(start=MARCH_1, end=MARCH_3)["totals"]

    assert totals["rate_limited"] == 1
    assert totals["fallbacks"] == 1
    assert totals["errors"] == 1  # the 529; a 429 is counted as a rate-limit hit only


def test_it_groups_by_task_type(calls):
    rows = by(cost_summary(start=MARCH_1, end=MARCH_3)["by_task_type"], "task_type")

    assert rows[TaskType.CARD_INTERPRETATION]["cost"] == Decimal("0.0012") + Decimal("0.0008")
    assert rows[TaskType.CARD_INTERPRETATION]["calls"] == 3
    assert rows[TaskType.CARD_INTERPRETATION]["rate_limited"] == 1
    assert rows[TaskType.OVERALL_READING]["cost"] == Decimal("0.015")
    assert rows[TaskType.ADVICE]["fallbacks"] == 1
    assert rows[TaskType.RELATIONSHIPS]["cost"] == 0
    assert rows[TaskType.RELATIONSHIPS]["errors"] == 1


def test_it_lists_the_most_expensive_group_first(calls):
    summary = cost_summary(start=MARCH_1, end=MARCH_3)

    assert summary["by_task_type"][0]["task_type"] == TaskType.OVERALL_READING
    assert summary["by_model"][0]["model"] == "claude-sonnet-4-5"


def test_it_groups_by_model(calls):
    rows = by(cost_summary(start=MARCH_1, end=MARCH_3)["by_model"], "model")

    assert set(rows) == {"claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-0"}
    assert rows["claude-haiku-4-5"]["cost"] == Decimal("0.0045")
    assert rows["claude-haiku-4-5"]["calls"] == 4
    assert rows["claude-sonnet-4-0"]["cost"] == 0


def test_it_groups_by_spread(calls):
    rows = by(cost_summary(start=MARCH_1, end=MARCH_3)["by_spread"], "spread_slug")

    assert rows["celtic_cross"]["cost"] == Decimal("0.0012") + Decimal("0.015")
    assert rows["celtic_cross"]["spread_name"] == "Celtic Cross"
    assert rows["three_card"]["cost"] == Decimal("0.0008") + Decimal("0.0025")
    assert rows["three_card"]["calls"] == 3


def test_it_groups_calls_without_a_spread_under_none():
    make_call(at("2025-03-01 08:00"), cost="0.5")

    rows = cost_summary(start=MARCH_1, end=MARCH_1)["by_spread"]

    assert [(row["spread_slug"], row["cost"]) for row in rows] == [(None, Decimal("0.5"))]


def test_it_groups_by_utc_day(calls):
    rows = cost_summary(start=MARCH_1, end=MARCH_3)["by_day"]

    assert [(row["day"], row["cost"], row["calls"]) for row in rows] == [
        (date(2025, 3, 1), Decimal("0.0162"), 2),
        (date(2025, 3, 2), Decimal("0.0008"), 2),
        (date(2025, 3, 3), Decimal("0.0025"), 2),
    ]


def test_it_splits_each_day_by_task_type_for_the_chart(calls):
    rows = cost_summary(start=MARCH_1, end=MARCH_3)["by_day_task_type"]

    assert [(row["day"], row["task_type"], row["cost"], row["calls"]) for row in rows] == [
        (date(2025, 3, 1), TaskType.CARD_INTERPRETATION, Decimal("0.0012"), 1),
        (date(2025, 3, 1), TaskType.OVERALL_READING, Decimal("0.015"), 1),
        (date(2025, 3, 2), TaskType.CARD_INTERPRETATION, Decimal("0.0008"), 2),
        (date(2025, 3, 3), TaskType.ADVICE, Decimal("0.0025"), 1),
        (date(2025, 3, 3), TaskType.RELATIONSHIPS, Decimal("0"), 1),
    ]


def test_it_includes_both_ends_of_the_range_and_nothing_beyond(calls):
    assert cost_summary(start=MARCH_1, end=MARCH_3)["totals"]["calls"] == 6
    first_day = cost_summary(start=MARCH_1, end=MARCH_1)["totals"]
    assert first_day["calls"] == 2  # midnight at the start counts; 23:59:59.999999 before not
    assert first_day["cost"] == Decimal("0.0162")
    last_day = cost_summary(start=MARCH_3, end=MARCH_3)["totals"]
    assert last_day["calls"] == 2  # the last microsecond of the end day counts
    day_after = cost_summary(start=date(2025, 3, 4), end=date(2025, 3, 4))["totals"]
    assert day_after["cost"] == Decimal("2")


def test_it_filters_by_spread(calls):
    totals = cost_summary(start=MARCH_1, end=MARCH_3, spread="three_card")["totals"]

    assert totals["cost"] == Decimal("0.0033")
    assert totals["calls"] == 3


def test_it_filters_by_task_type(calls):
    summary = cost_summary(start=MARCH_1, end=MARCH_3, task_type=TaskType.CARD_INTERPRETATION)

    assert summary["totals"]["cost"] == Decimal("0.0020")
    assert [row["task_type"] for row in summary["by_task_type"]] == [TaskType.CARD_INTERPRETATION]


def test_it_filters_by_model(calls):
    totals = cost_summary(start=MARCH_1, end=MARCH_3, model="claude-sonnet-4-5")["totals"]

    assert totals["cost"] == Decimal("0.015")
    assert totals["calls"] == 1


def test_it_combines_filters(calls):
    totals = cost_summary(
        start=MARCH_1, end=MARCH_3, spread="three_card", task_type=TaskType.CARD_INTERPRETATION
    )["totals"]

    assert (totals["cost"], totals["calls"], totals["rate_limited"]) == (Decimal("0.0008"), 2, 1)


def test_it_averages_the_cost_per_reading(calls):
    per_reading = cost_summary(start=MARCH_1, end=MARCH_3)["per_reading"]

    assert per_reading["readings"] == 2
    assert per_reading["cost"] == Decimal("0.0195")
    assert per_reading["average_cost"] == Decimal("0.00975000")


def test_it_ranks_the_most_expensive_readings(calls):
    first, second = calls["readings"]

    top = cost_summary(start=MARCH_1, end=MARCH_3)["per_reading"]["top"]

    assert [(row["reading_id"], row["cost"], row["calls"]) for row in top] == [
        (first.id, Decimal("0.0162"), 2),
        (second.id, Decimal("0.0033"), 3),
    ]
    assert top[0]["spread"] == "celtic_cross"


def test_it_keeps_only_twenty_top_readings():
    spread = Spread.objects.get(slug="three_card")
    for n in range(25):
        reading = Reading.objects.create(spread=spread, question=f"Question {n}")
        make_call(at("2025-03-01 10:00"), cost=f"0.{n + 10:02d}", reading=reading)

    per_reading = cost_summary(start=MARCH_1, end=MARCH_1)["per_reading"]

    assert per_reading["readings"] == 25
    assert len(per_reading["top"]) == 20
    assert per_reading["top"][0]["cost"] == Decimal("0.34")
    assert per_reading["top"][-1]["cost"] == Decimal("0.15")


def test_it_returns_zeros_for_a_range_without_calls():
    summary = cost_summary(start=MARCH_1, end=MARCH_3)

    assert summary["totals"]["cost"] == 0
    assert summary["totals"]["calls"] == 0
    assert summary["by_day"] == []
    assert summary["per_reading"]["average_cost"] == 0
    assert summary["per_reading"]["top"] == []


def test_it_defaults_to_the_last_30_days_including_today():
    assert default_range(today=date(2025, 3, 30)) == (date(2025, 3, 1), date(2025, 3, 30))


def test_it_runs_a_fixed_number_of_queries_however_many_calls(calls, django_assert_max_num_queries):
    for hour in range(20):
        make_call(at(f"2025-03-02 {hour:02d}:00"), cost="0.001")

    with django_assert_max_num_queries(8):
        cost_summary(start=MARCH_1, end=MARCH_3)


def test_it_gives_every_metric_for_one_grouping(calls):
    rows = cost_rows(group="model", start=MARCH_1, end=MARCH_3, spread="celtic_cross")

    assert [(row["model"], row["cost"], row["calls"]) for row in rows] == [
        ("claude-haiku-4-5", Decimal("0.0012"), 1),
        ("claude-sonnet-4-0", Decimal("0"), 1),
        ("claude-sonnet-4-5", Decimal("0.015"), 1),
    ]


def test_it_refuses_an_unknown_grouping():
    with pytest.raises(ValueError, match="Unknown group"):
        cost_rows(group="colour", start=MARCH_1, end=MARCH_3)
