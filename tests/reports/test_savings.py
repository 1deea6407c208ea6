"""What caching, batches and failover did to the bill: hit ratio, savings and extra cost.

The models here have admin price overrides, so every figure is worked out by hand below
(USD per million tokens):

    test-sonnet: input 3, output 15, cache read 0.30, 5m write 3.75, 1h write 6, batch x0.5
    test-haiku:  input 1, output 5,  cache read 0.10, 5m write 1.25, 1h write 2, batch x0.5
"""

import csv
import io
from decimal import Decimal

import pytest

from allocation.models import CallOutcome, ModelPrice
from reports.savings import savings_summary
from spreads.models import TaskType
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

NOVEMBER = {"start": at("2026-11-01 00:00").date(), "end": at("2026-11-30 00:00").date()}
QUERY = {"start": "2026-11-01", "end": "2026-11-30"}


@pytest.fixture(autouse=True)
def prices():
    for model, rates in {
        "test-sonnet": ("3", "15", "0.30", "3.75", "6"),
        "test-haiku": ("1", "5", "0.10", "1.25", "2"),
    }.items():
        ModelPrice.objects.create(
            model=model,
            input_per_mtok=Decimal(rates[0]),
            output_per_mtok=Decimal(rates[1]),
            cache_read_per_mtok=Decimal(rates[2]),
            cache_write_per_mtok=Decimal(rates[3]),
            cache_write_1h_per_mtok=Decimal(rates[4]),
            batch_multiplier=Decimal("0.5"),
        )


@pytest.fixture
def cached_cards():
    # Input side 1,000 + 9,000 read + 2,000 written = 12,000; 9,000 read is a 75% hit ratio.
    # Uncached the 11,000 cached tokens are input at $3: reads save 9,000 x (3 - 0.30)
    # = $0.0243, writes cost 2,000 x (3.75 - 3) = $0.0015 more: $0.0228 saved.
    make_call(
        at("2026-11-03 10:00"),
        task_type=TaskType.CARD_INTERPRETATION,
        model="test-sonnet",
        input_tokens=1000,
        cache_read_tokens=9000,
        cache_write_tokens=2000,
        output_tokens=500,
        cost="0.0207",
    )


@pytest.fixture
def batched_advice():
    # Standard price: 2,000 x 1 + 4,000 x 0.10 + 1,000 x 5 = $0.0074; batched half: $0.0037
    # saved. Caching saved 4,000 x (1 - 0.10) x 0.5 = $0.0018 (at the batch price).
    make_call(
        at("2026-11-04 10:00"),
        task_type=TaskType.ADVICE,
        model="test-haiku",
        input_tokens=2000,
        cache_read_tokens=4000,
        output_tokens=1000,
        batched=True,
        cost="0.0037",
    )


@pytest.fixture
def failover():
    # Overall reading allocated to test-haiku, answered by test-sonnet: 10,000 in and 2,000
    # out cost 0.03 + 0.03 = $0.06 there, 0.01 + 0.01 = $0.02 on test-haiku: $0.04 extra.
    make_call(
        at("2026-11-05 10:00"),
        task_type=TaskType.OVERALL_READING,
        requested_model="test-haiku",
        model="test-sonnet",
        is_fallback=True,
        input_tokens=10000,
        output_tokens=2000,
        cost="0.06",
    )
    # The attempt on the allocated model that was turned away: nothing spent.
    make_call(
        at("2026-11-05 10:00"),
        task_type=TaskType.OVERALL_READING,
        model="test-haiku",
        outcome=CallOutcome.OVERLOADED,
    )


def by(rows, key):
    return {row[key]: row for row in rows}


def test_caching_shows_its_hit_ratio_and_what_it_saved(cached_cards):
    summary = savings_summary(**NOVEMBER)

    cards = by(summary["by_task_type"], "task_type")[TaskType.CARD_INTERPRETATION]
    assert cards["cache_hit_ratio"] == Decimal("0.7500")
    assert cards["cache_saving"] == Decimal("0.0228")
    assert by(summary["by_model"], "model")["test-sonnet"]["cache_saving"] == Decimal("0.0228")
    assert summary["totals"]["cache_saving"] == Decimal("0.0228")
    assert summary["totals"]["batch_saving"] == 0


def test_a_cache_write_nobody_reads_shows_as_a_loss():
    # A one-hour write at $6 instead of plain input at $3: 1,000 x 3 = $0.003 lost.
    make_call(
        at("2026-11-03 10:00"),
        model="test-sonnet",
        cache_write_1h_tokens=1000,
        cost="0.006",
    )

    totals = savings_summary(**NOVEMBER)["totals"]

    assert totals["cache_hit_ratio"] == Decimal("0.0000")
    assert totals["cache_saving"] == Decimal("-0.003")


def test_batches_show_what_they_saved_at_the_standard_price(batched_advice):
    advice = by(savings_summary(**NOVEMBER)["by_task_type"], "task_type")[TaskType.ADVICE]

    assert advice["batched_calls"] == 1
    assert advice["batch_saving"] == Decimal("0.0037")
    assert advice["cache_saving"] == Decimal("0.0018")
    assert advice["cache_hit_ratio"] == Decimal("0.6667")


def test_failover_shows_what_the_same_tokens_would_have_cost_on_the_allocated_model(failover):
    summary = savings_summary(**NOVEMBER)

    assert summary["failover"] == [
        {
            "task_type": TaskType.OVERALL_READING,
            "model": "test-sonnet",
            "requested_model": "test-haiku",
            "calls": 1,
            "cost": Decimal("0.06"),
            "on_requested": Decimal("0.02"),
            "extra": Decimal("0.04"),
            "unpriced_calls": 0,
        }
    ]
    overall = by(summary["by_task_type"], "task_type")[TaskType.OVERALL_READING]
    assert overall["fallback_calls"] == 1
    assert overall["failover_extra"] == Decimal("0.04")
    models = by(summary["by_model"], "model")
    assert models["test-sonnet"]["failover_extra"] == Decimal("0.04")
    assert models["test-haiku"]["fallback_calls"] == 0
    assert summary["totals"]["failover_extra"] == Decimal("0.04")


def test_the_figures_add_up_across_task_types(cached_cards, batched_advice, failover):
    totals = savings_summary(**NOVEMBER)["totals"]

    assert totals["cache_saving"] == Decimal("0.0228") + Decimal("0.0018")
    assert totals["batch_saving"] == Decimal("0.0037")
    assert totals["failover_extra"] == Decimal("0.04")
    # 13,000 cache reads out of 12,000 + 6,000 + 10,000 input-side tokens.
    assert totals["cache_hit_ratio"] == Decimal("0.4643")


def test_the_filters_apply(cached_cards, batched_advice):
    summary = savings_summary(**NOVEMBER, model="test-haiku")

    assert [row["task_type"] for row in summary["by_task_type"]] == [TaskType.ADVICE]
    assert summary["totals"]["cache_saving"] == Decimal("0.0018")


def test_calls_on_a_model_nobody_can_price_are_counted_apart_not_guessed(cached_cards):
    make_call(
        at("2026-11-03 11:00"), model="mystery-model", input_tokens=100, cache_read_tokens=100
    )
    # Turned away before any token: nothing to price, so nothing left out.
    make_call(at("2026-11-03 11:00"), model="mystery-model", outcome=CallOutcome.RATE_LIMITED)

    summary = savings_summary(**NOVEMBER)

    mystery = by(summary["by_model"], "model")["mystery-model"]
    assert mystery["unpriced_calls"] == 1
    assert mystery["cache_saving"] == 0
    assert mystery["cache_hit_ratio"] == Decimal("0.5000")
    assert summary["totals"]["unpriced_calls"] == 1
    assert summary["totals"]["cache_saving"] == Decimal("0.0228")


def test_the_costs_page_shows_the_savings_and_the_failover_cost(
    staff_client, cached_cards, batched_advice, failover
):
    page = staff_client.get("/reports/costs/", QUERY).content.decode()

    assert '<span class="figure" id="cache-saving">$0.02</span>' in page
    assert '<span class="figure" id="batch-saving">&lt; $0.01</span>' in page
    assert '<span class="figure" id="failover-extra">$0.04</span>' in page
    assert '<span class="figure" id="cache-hit-ratio">46%</span>' in page
    assert "What failover cost" in page
    assert '<td class="num" id="failover-extra-total">$0.04</td>' in page


def test_the_json_api_carries_the_savings_as_exact_strings(
    staff_client, cached_cards, batched_advice, failover
):
    body = staff_client.get("/reports/api/costs/", QUERY).json()

    savings = body["savings"]
    assert Decimal(savings["totals"]["cache_saving"]) == Decimal("0.0246")
    assert Decimal(savings["totals"]["batch_saving"]) == Decimal("0.0037")
    assert savings["totals"]["cache_hit_ratio"] == "0.4643"
    [failed_over] = savings["failover"]
    assert failed_over["requested_model"] == "test-haiku"
    assert Decimal(failed_over["extra"]) == Decimal("0.04")


def rows_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_task_type_csv_carries_the_savings_columns(staff_client, cached_cards, failover):
    rows = by(
        rows_of(staff_client.get("/reports/costs.csv", {**QUERY, "group": "task_type"})),
        "task_type",
    )

    assert Decimal(rows[TaskType.CARD_INTERPRETATION]["cache_saving"]) == Decimal("0.0228")
    assert rows[TaskType.CARD_INTERPRETATION]["cache_hit_ratio"] == "0.7500"
    assert Decimal(rows[TaskType.OVERALL_READING]["failover_extra"]) == Decimal("0.04")
    # The summary's own columns are still there, first.
    assert rows[TaskType.OVERALL_READING]["calls"] == "2"


def test_the_model_csv_carries_the_savings_columns(staff_client, batched_advice):
    rows = by(rows_of(staff_client.get("/reports/costs.csv", {**QUERY, "group": "model"})), "model")

    assert Decimal(rows["test-haiku"]["batch_saving"]) == Decimal("0.0037")


def test_the_failover_csv_lists_each_failover_with_its_extra_cost(staff_client, failover):
    response = staff_client.get("/reports/costs.csv", {**QUERY, "group": "failover"})

    assert response.status_code == 200
    [row] = rows_of(response)
    assert row["task_type"] == TaskType.OVERALL_READING
    assert (row["model"], row["requested_model"]) == ("test-sonnet", "test-haiku")
    assert Decimal(row["cost"]) == Decimal("0.06")
    assert Decimal(row["on_requested"]) == Decimal("0.02")
    assert Decimal(row["extra"]) == Decimal("0.04")
