"""The cost reports page also shows each model's live limits and breaker, and how they moved."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from allocation.models import Lease, LimitChange, ModelLimit, ModelState
from reports import selectors
from tests.reports import at, make_call

pytestmark = pytest.mark.django_db

URL = "/reports/costs/"
API_URL = "/reports/api/costs/"
MARCH = {"start": "2025-03-01", "end": "2025-03-03"}


def limit_change(
    model: str, when: datetime, *, limit: int, reason: str, breaker_state: str = "closed"
) -> LimitChange:
    change = LimitChange.objects.create(
        model=model, limit=limit, reason=reason, breaker_state=breaker_state
    )
    LimitChange.objects.filter(pk=change.pk).update(created_at=when)  # auto_now_add
    return change


@pytest.fixture
def haiku_open():
    """claude-haiku-4-5 failed five times in a row at 12:03:10 on March 2nd; two calls in
    flight, one lease left behind by a dead worker."""
    ModelLimit.objects.update_or_create(model="*", defaults={"max_concurrent_calls": 10})
    state = ModelState.objects.create(
        model="claude-haiku-4-5",
        adaptive={"limit": 4, "last_reason": "overloaded"},
        breaker={
            "state": "open",
            "failures": 5,
            "opened_at": at("2025-03-02 12:03:10").timestamp(),
            "probes": 0,
        },
    )
    now = time.time()
    for expires_at in (now + 10, now + 10, now - 10):
        Lease.objects.create(model="claude-haiku-4-5", holder="test:1", expires_at=expires_at)
    limit_change("claude-haiku-4-5", at("2025-03-02 12:03:09"), limit=4, reason="overloaded")
    limit_change(
        "claude-haiku-4-5",
        at("2025-03-02 12:03:10"),
        limit=4,
        reason="breaker_open",
        breaker_state="open",
    )
    return state


def test_it_shows_an_open_breaker_in_red(staff_client, haiku_open):
    response = staff_client.get(URL, MARCH)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Limits and circuit breakers" in page
    assert '<strong class="breaker-open">open since 2025-03-02 12:03:10 UTC</strong>' in page
    assert ".breaker-open { color: var(--error-fg" in page


def test_it_gives_only_the_time_for_a_breaker_opened_today(staff_client):
    opened = datetime.now(UTC) - timedelta(seconds=5)
    ModelState.objects.create(
        model="claude-haiku-4-5", breaker={"state": "open", "opened_at": opened.timestamp()}
    )

    page = staff_client.get(URL).content.decode()

    assert f"open since {opened:%H:%M:%S} UTC</strong>" in page


def test_it_shows_the_limits_below_the_totals(staff_client, haiku_open):
    page = staff_client.get(URL, MARCH).content.decode()

    assert page.index('id="totals"') < page.index('id="limits"') < page.index('id="chart"')


def test_it_counts_only_unexpired_leases_as_calls_in_flight(haiku_open):
    [row] = selectors.limits_overview()

    assert row["in_flight"] == 2
    assert row["adaptive_limit"] == 4
    assert row["configured_max"] == 10 and row["limit_source"] == "*"
    assert row["effective_limit"] == 4
    assert row["breaker_state"] == "open"
    assert row["breaker_opened_at"] == at("2025-03-02 12:03:10")
    assert row["last_change"] == {
        "at": at("2025-03-02 12:03:10"),
        "limit": 4,
        "reason": "breaker_open",
    }


def test_it_shows_limit_changes_in_the_range_newest_first(staff_client, haiku_open):
    page = staff_client.get(URL, MARCH).content.decode()

    history = page[page.index('id="limit-history"') :]
    assert "2025-03-02 12:03:10" in history and "breaker_open" in history
    assert history.index("breaker_open") < history.index("overloaded")


def test_it_leaves_out_limit_changes_outside_the_range(haiku_open):
    limit_change("claude-haiku-4-5", at("2025-02-28 23:59:59"), limit=9, reason="increase")
    limit_change("claude-haiku-4-5", at("2025-03-04 00:00:00"), limit=8, reason="latency")

    history = selectors.limit_history(start=at("2025-03-01").date(), end=at("2025-03-03").date())

    assert [change["reason"] for change in history] == ["breaker_open", "overloaded"]


def test_it_shows_at_most_100_limit_changes(db):
    for n in range(105):
        limit_change(
            "claude-haiku-4-5",
            at("2025-03-02 12:00") + timedelta(seconds=n),
            limit=5,
            reason="increase",
        )

    history = selectors.limit_history(start=at("2025-03-02").date(), end=at("2025-03-02").date())

    assert len(history) == 100
    assert history[0]["created_at"] == at("2025-03-02 12:01:44")  # the newest


def test_it_narrows_the_limits_to_the_chosen_model(staff_client, haiku_open):
    make_call(at("2025-03-02 13:00"), model="claude-sonnet-4-5")  # the filter offers it
    ModelState.objects.create(model="claude-sonnet-4-5")
    limit_change("claude-sonnet-4-5", at("2025-03-02 13:00"), limit=7, reason="increase")

    response = staff_client.get(URL, {**MARCH, "model": "claude-sonnet-4-5"})

    assert response.status_code == 200
    limits = response.context["limits"]
    assert [row["model"] for row in limits["models"]] == ["claude-sonnet-4-5"]
    assert [change["model"] for change in limits["history"]] == ["claude-sonnet-4-5"]


def test_it_says_so_when_no_model_has_limiter_state(staff_client):
    page = staff_client.get(URL, MARCH).content.decode()

    assert "No model has been called through the limiter yet." in page
    assert "No limit changes in this range." in page


def test_it_includes_the_limits_in_the_json_api(staff_client, haiku_open):
    body = staff_client.get(API_URL, MARCH).json()

    [row] = body["limits"]["models"]
    assert row["model"] == "claude-haiku-4-5"
    assert row["breaker_state"] == "open"
    assert row["breaker_opened_at"] == "2025-03-02T12:03:10+00:00"
    assert row["in_flight"] == 2
    assert [change["reason"] for change in body["limits"]["history"]] == [
        "breaker_open",
        "overloaded",
    ]
    assert body["totals"]["calls"] == 0  # the cost summary is unchanged
