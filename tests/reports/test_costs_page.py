"""The cost reports page: staff only, a date range form, tables and an inline SVG chart."""

from datetime import UTC, date, datetime

import pytest
from django.urls import reverse

from reports.chart import TASK_COLOURS, cost_chart
from spreads.models import Spread, TaskType
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

URL = "/reports/costs/"
MARCH = {"start": "2025-03-01", "end": "2025-03-03"}


@pytest.fixture
def calls():
    celtic = Spread.objects.get(slug="celtic_cross")
    make_call(at("2025-03-01 09:00"), cost="0.00120000", spread=celtic, input_tokens=1200)
    make_call(
        at("2025-03-02 18:00"),
        cost="0.01500000",
        spread=celtic,
        task_type=TaskType.OVERALL_READING,
        model="claude-sonnet-4-5",
    )


def test_it_shows_staff_the_totals(staff_client, calls):
    response = staff_client.get(URL, MARCH)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Cost reports" in page
    assert 'id="total-cost">$0.02<' in page  # a total, in dollars and cents
    assert '<td class="num">$0.02</td>' in page  # the overall reading's row
    assert "claude-sonnet-4-5" in page
    assert "Celtic Cross" in page
    assert "1,200" in page  # input tokens


def test_it_draws_the_cost_per_day_chart_as_inline_svg(staff_client, calls):
    page = staff_client.get(URL, MARCH).content.decode()

    assert (
        '<svg xmlns="http://www.w3.org/2000/svg"' in page
        and 'class="cost-chart cost-chart-wide"' in page
    )
    assert "Cost (USD)" in page and "Day (UTC)" in page  # axis titles
    assert "<title>2025-03-02 · Overall reading: $0.02 (1 call)</title>" in page
    for colour in TASK_COLOURS.values():
        assert colour in page  # the legend names every task type's colour


def test_it_looks_like_the_admin(staff_client, calls):
    page = staff_client.get(URL, MARCH).content.decode()

    assert 'id="site-name"' in page  # the admin header
    assert reverse("admin:index") in page  # breadcrumbs back home


def test_it_defaults_to_the_last_30_days(staff_client):
    response = staff_client.get(URL)

    assert response.status_code == 200
    today = datetime.now(UTC).date()
    assert f'value="{today.isoformat()}"' in response.content.decode()


def test_it_applies_the_filters(staff_client, calls):
    response = staff_client.get(URL, {**MARCH, "model": "claude-haiku-4-5"})

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="total-cost">&lt; $0.01<' in page  # only the card call: under a cent
    assert 'id="total-cost">$0.02<' not in page


def test_it_forbids_signed_in_non_staff(client, bob):
    client.force_login(bob)

    assert client.get(URL).status_code == 403


def test_it_sends_anonymous_visitors_to_the_admin_login(client):
    response = client.get(URL, MARCH)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/reports/costs/")


def test_it_explains_an_invalid_date(staff_client):
    response = staff_client.get(URL, {"start": "2025-13-45", "end": "2025-03-03"})

    assert response.status_code == 400
    assert "Enter the start date as YYYY-MM-DD." in response.content.decode()


def test_it_explains_a_start_after_the_end(staff_client):
    response = staff_client.get(URL, {"start": "2025-03-05", "end": "2025-03-01"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "The start date (2025-03-05) is after the end date (2025-03-01)" in page
    assert 'class="cost-chart"' not in page


def test_it_refuses_a_range_too_long_to_draw(staff_client):
    response = staff_client.get(URL, {"start": "2000-01-01", "end": "2025-01-01"})

    assert response.status_code == 400
    assert "Pick at most 731 days" in response.content.decode()


def test_it_survives_dates_at_the_edge_of_the_calendar(staff_client):
    response = staff_client.get(URL, {"start": "9999-12-31", "end": "9999-12-31"})

    assert response.status_code == 400
    assert "out of range" in response.content.decode()


def test_it_rejects_an_unknown_model(staff_client):
    response = staff_client.get(URL, {**MARCH, "model": "gpt-9"})

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


def test_it_links_the_admin_index_to_the_reports(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()

    assert f'href="{URL}"' in page
    assert "Cost reports" in page


def test_it_draws_one_segment_per_day_and_task_type():
    march_1 = date(2025, 3, 1)
    svg = cost_chart(
        start=march_1,
        end=date(2025, 3, 2),
        by_day=[{"day": march_1, "cost": 3}],
        by_day_task_type=[
            {"day": march_1, "task_type": TaskType.CARD_INTERPRETATION, "cost": 1, "calls": 2},
            {"day": march_1, "task_type": TaskType.ADVICE, "cost": 2, "calls": 1},
        ],
    )

    assert svg.count("<rect x=") == 2 + len(TASK_COLOURS)  # segments, then the legend's keys
    assert "Card interpretation: $1.00 (2 calls)" in svg
    assert "Advice: $2.00 (1 call)" in svg
    assert "Mar 01" in svg and "Mar 02" in svg


def test_it_says_so_when_there_is_nothing_to_draw():
    svg = cost_chart(start=date(2025, 3, 1), end=date(2025, 3, 1), by_day=[], by_day_task_type=[])

    assert "No calls in this range" in svg
