"""The limiter's backends, for tests that must hold on both: one fixture, run once each."""

import os

import pytest
import redis
from django.utils import timezone

from allocation.limiter import LogRow, get_backend
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage
from allocation.usage import Attempt, forget_unsent, opening

# A database of its own, flushed around every test (TEST_REDIS_URL lets two suites run side by
# side on one Redis).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(
        REDIS_URL, socket_connect_timeout=2, socket_timeout=2, decode_responses=True
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is not answering at {REDIS_URL} ({exc}): start it with: "
            "redis-server --daemonize yes --save '' --appendonly no",
            pytrace=False,
        )
    return client


@pytest.fixture(params=["postgres", "redis"])
def backend(request, settings):
    """The limiter's backend under test, from a clean slate."""
    client = None
    if request.param == "redis":
        client = redis_client()
        client.flushdb()
        settings.LLM_LIMITER_REDIS_URL = REDIS_URL
    else:
        settings.LLM_LIMITER_REDIS_URL = ""
    chosen = get_backend()
    chosen.reset()
    yield chosen
    if client is not None:
        client.flushdb()
        client.close()


@pytest.fixture
def backend_env(backend, settings) -> dict:
    """What a child process needs in its environment to use the same backend."""
    return {"LLM_LIMITER_REDIS_URL": settings.LLM_LIMITER_REDIS_URL}


def pending_log_row(model: str, **ids) -> LogRow:
    """The pending ledger row of a call to `model`, as the engine hands it to the limiter;
    `ids`: its reading, task and spread."""
    attempt = Attempt(
        task_type="card_interpretation",
        requested_model=model,
        model=model,
        outcome=CallOutcome.PENDING,
        attempt=1,
        is_retry=False,
        is_fallback=False,
        latency_s=0.0,
        started_at=timezone.now(),
        usage=TokenUsage(input_tokens=10),
    )
    return LogRow(insert=lambda: opening(attempt, **ids), delete=forget_unsent)
