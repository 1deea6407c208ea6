"""/healthz for monitors (public, no secrets) and /metrics for Prometheus (staff or token)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from allocation.models import CallOutcome, LLMCall, ModelState
from readings.models import Reading, ReadingStatus
from spreads.models import Spread
from worker.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_anonymous_callers_get_the_status_and_nothing_more(client):
    WorkerHeartbeat.objects.create(holder="host:1", beat_at=timezone.now())

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_staff_see_database_broker_workers_and_queue_depth(client, alice):
    WorkerHeartbeat.objects.create(holder="host:1", beat_at=timezone.now())
    async_task("math.floor", 1.5)
    client.force_login(alice)

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "workers": True,
    }
    assert body["queue_depth"] == 1


def test_it_is_degraded_but_up_when_no_worker_has_beaten_recently(client, settings):
    WorkerHeartbeat.objects.create(holder="host:1", beat_at=timezone.now() - timedelta(minutes=5))
    settings.METRICS_TOKEN = "monitor-token"

    body = client.get("/healthz", HTTP_AUTHORIZATION="Bearer monitor-token").json()

    assert body["status"] == "degraded"
    assert body["checks"]["workers"]["ok"] is False
    assert "no live worker cluster" in body["checks"]["workers"]["detail"]


def test_it_refuses_metrics_to_anonymous_and_non_staff(client, bob):
    assert client.get("/metrics").status_code == 403
    client.force_login(bob)
    assert client.get("/metrics").status_code == 403


def test_it_refuses_metrics_with_a_wrong_token(client, settings):
    settings.METRICS_TOKEN = "right-token"

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token")

    assert response.status_code == 403


@pytest.fixture
def ledger():
    spread = Spread.objects.get(slug="three_card")
    now = timezone.now()
    for outcome, cost in [
        (CallOutcome.OK, "0.00200000"),
        (CallOutcome.OK, "0.00100000"),
        (CallOutcome.RATE_LIMITED, "0"),
    ]:
        LLMCall.objects.create(
            task_type="card_interpretation",
            spread=spread,
            requested_model="claude-haiku-4-5",
            model="claude-haiku-4-5",
            outcome=outcome,
            input_tokens=100,
            output_tokens=50,
            cost_usd=Decimal(cost),
            latency_s=0.5,
            started_at=now,
        )
    ModelState.objects.create(
        model="claude-haiku-4-5", breaker={"state": "open"}, adaptive={"limit": 7}
    )
    Reading.objects.create(spread=spread, question="?", status=ReadingStatus.DONE, wall_time_s=4.0)


def test_it_exports_calls_tokens_cost_429s_breaker_limit_queue_and_durations(
    client, settings, ledger
):
    settings.METRICS_TOKEN = "scrape-me"

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")

    assert response.status_code == 200
    text = response.content.decode()
    for line in [
        'tarot_llm_calls_total{model="claude-haiku-4-5",outcome="ok"} 2.0',
        'tarot_llm_calls_total{model="claude-haiku-4-5",outcome="rate_limited"} 1.0',
        'tarot_llm_rate_limited_total{model="claude-haiku-4-5"} 1.0',
        'tarot_llm_tokens_total{kind="input",model="claude-haiku-4-5"} 300.0',
        'tarot_llm_cost_usd_total{model="claude-haiku-4-5"} 0.003',
        'tarot_breaker_state{model="claude-haiku-4-5"} 2.0',
        'tarot_adaptive_limit{model="claude-haiku-4-5"} 7.0',
        "tarot_queue_depth 0.0",
        'tarot_readings_total{status="done"} 1.0',
        'tarot_reading_duration_seconds_bucket{le="5"} 1.0',
        'tarot_reading_duration_seconds_bucket{le="2.5"} 0.0',
        "tarot_reading_duration_seconds_sum 4.0",
    ]:
        assert line in text, line


def test_it_shows_metrics_to_staff(staff_client):
    assert staff_client.get("/metrics").status_code == 200
