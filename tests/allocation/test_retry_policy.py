import email.utils
import math
import random

import anthropic
import httpx2  # the HTTP client anthropic 2.x is built on (a fork of httpx)
import pytest

from allocation.adaptive_limit import OUTCOMES
from allocation.circuit_breaker import counts_as_failure
from allocation.retry_policy import (
    RetryParams,
    backoff_delay,
    classify,
    fallback_may_help,
    is_fatal,
    retry_after_from_headers,
    should_retry,
)

NOW = 1_700_000_000.0  # Unix time: HTTP dates are measured against it
REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def status_error(cls, status: int, *, error_type: str | None = None, headers=None):
    """An SDK exception built the way the SDK builds it: from a real response and its body."""
    body = (
        {"type": "error", "error": {"type": error_type, "message": "..."}} if error_type else None
    )
    response = httpx2.Response(status, request=REQUEST, headers=headers or {}, json=body)
    return cls(f"Error code: {status}", response=response, body=body)


class NoJitter(random.Random):
    def random(self):
        return 0.0


class FullJitter(random.Random):
    def random(self):
        return 1.0 - 1e-12


# retry-after


def test_it_reads_retry_after_ms_first():
    headers = {"retry-after-ms": "1500", "retry-after": "7"}
    assert retry_after_from_headers(headers, now=NOW) == 1.5


def test_it_reads_retry_after_as_seconds():
    assert retry_after_from_headers({"retry-after": "3"}, now=NOW) == 3.0
    assert retry_after_from_headers({"retry-after": "2.5"}, now=NOW) == 2.5


def test_it_reads_retry_after_as_an_http_date():
    date = email.utils.formatdate(NOW + 10, usegmt=True)
    assert retry_after_from_headers({"retry-after": date}, now=NOW) == 10.0


def test_it_falls_back_to_retry_after_when_retry_after_ms_is_garbage():
    headers = {"retry-after-ms": "soon", "retry-after": "4"}
    assert retry_after_from_headers(headers, now=NOW) == 4.0


def test_it_ignores_header_case():
    assert retry_after_from_headers({"Retry-After": "3"}, now=NOW) == 3.0
    assert retry_after_from_headers(httpx2.Headers({"Retry-After-Ms": "250"}), now=NOW) == 0.25


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "0"},
        {"retry-after": "-1"},
        {"retry-after": "61"},
        {"retry-after-ms": "60001"},
        {"retry-after": email.utils.formatdate(NOW - 5, usegmt=True)},
        {"retry-after": email.utils.formatdate(NOW + 3600, usegmt=True)},
        {"retry-after": "whenever"},
    ],
    ids=["absent", "zero", "negative", "over-60s", "over-60s-ms", "past-date", "far-date", "junk"],
)
def test_it_ignores_a_retry_after_outside_zero_to_sixty_seconds(headers):
    assert retry_after_from_headers(headers, now=NOW) is None


def test_it_honours_exactly_sixty_seconds():
    assert retry_after_from_headers({"retry-after": "60"}, now=NOW) == 60.0


def test_it_lets_a_caller_that_only_needs_to_know_accept_longer_waits():
    assert retry_after_from_headers({"retry-after": "600"}, now=NOW, max_s=math.inf) == 600.0


# backoff


def test_it_doubles_the_delay_from_half_a_second_up_to_eight():
    delays = [backoff_delay(n, retry_after=None, rng=NoJitter()) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_it_jitters_down_by_at_most_a_quarter():
    for attempt in range(1, 8):
        base = backoff_delay(attempt, retry_after=None, rng=NoJitter())
        low = backoff_delay(attempt, retry_after=None, rng=FullJitter())
        assert base * 0.75 <= low < base
        assert low == pytest.approx(base * 0.75)


def test_it_jitters_the_same_way_for_the_same_seed():
    def delays(seed):
        rng = random.Random(seed)
        return [backoff_delay(n, retry_after=None, rng=rng) for n in range(1, 6)]

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)
    assert all(0.75 * 0.5 <= d <= 8.0 for d in delays(7))


def test_it_lets_the_servers_retry_after_win():
    rng = random.Random(1)
    assert backoff_delay(1, retry_after=3.0, rng=rng) == 3.0
    assert backoff_delay(9, retry_after=0.2, rng=rng) == 0.2


def test_it_backs_off_normally_when_retry_after_is_zero():
    assert backoff_delay(2, retry_after=0.0, rng=NoJitter()) == 1.0


def test_it_takes_custom_bounds():
    rng = NoJitter()
    assert backoff_delay(1, retry_after=None, rng=rng, initial=1.0, max_delay=3.0) == 1.0
    assert backoff_delay(3, retry_after=None, rng=rng, initial=1.0, max_delay=3.0) == 3.0


def test_it_survives_an_absurd_attempt_count():
    assert backoff_delay(10_000, retry_after=None, rng=NoJitter()) == 8.0


def test_it_counts_attempts_from_one():
    with pytest.raises(ValueError):
        backoff_delay(0, retry_after=None, rng=random.Random(0))


def test_it_defaults_to_the_sdks_retry_numbers():
    params = RetryParams()
    assert params.max_attempts_per_model == 1 + anthropic.DEFAULT_MAX_RETRIES
    assert (params.initial_delay_s, params.max_delay_s) == (0.5, 8.0)


# should_retry


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_it_retries_timeouts_conflicts_rate_limits_and_server_errors(status):
    assert should_retry(status, {})


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
def test_it_does_not_retry_other_client_errors(status):
    assert not should_retry(status, {})


def test_it_retries_when_there_was_no_response_at_all():
    assert should_retry(None, None)


def test_it_obeys_x_should_retry_over_the_status():
    assert should_retry(400, {"x-should-retry": "true"})
    assert not should_retry(503, {"X-Should-Retry": "false"})
    assert should_retry(503, {"x-should-retry": "maybe"})


# classify, is_fatal, fallback_may_help on the SDK's own exceptions


def test_it_classifies_a_429_as_rate_limited():
    exc = status_error(anthropic.RateLimitError, 429, error_type="rate_limit_error")
    assert classify(exc) == "rate_limited"
    assert not is_fatal(exc)


def test_it_classifies_a_529_as_overloaded():
    exc = status_error(anthropic.OverloadedError, 529, error_type="overloaded_error")
    assert classify(exc) == "overloaded"
    assert not is_fatal(exc)


def test_it_classifies_an_overload_sent_mid_stream_on_a_200_as_overloaded():
    exc = status_error(anthropic.APIStatusError, 200, error_type="overloaded_error")
    assert classify(exc) == "overloaded"
    assert not is_fatal(exc)


def test_it_classifies_a_client_timeout_as_a_timeout():
    exc = anthropic.APITimeoutError(request=REQUEST)
    assert classify(exc) == "timeout"
    assert not is_fatal(exc)


def test_it_classifies_our_own_deadline_as_a_timeout():
    assert classify(TimeoutError()) == "timeout"
    assert not is_fatal(TimeoutError())


@pytest.mark.parametrize(
    ("cls", "status"), [(anthropic.RequestTimeoutError, 408), (anthropic.GatewayTimeoutError, 504)]
)
def test_it_classifies_a_server_side_timeout_as_a_timeout(cls, status):
    assert classify(status_error(cls, status)) == "timeout"


def test_it_classifies_a_connection_failure_as_an_error_worth_retrying():
    exc = anthropic.APIConnectionError(request=REQUEST)
    assert classify(exc) == "error"
    assert not is_fatal(exc)


def test_it_classifies_a_500_as_an_error_worth_retrying():
    exc = status_error(anthropic.InternalServerError, 500, error_type="api_error")
    assert classify(exc) == "error"
    assert not is_fatal(exc)


def test_it_looks_through_an_exception_raised_from_an_sdk_error():
    cause = status_error(anthropic.RateLimitError, 429)
    try:
        raise RuntimeError("reading failed") from cause
    except RuntimeError as wrapped:
        assert classify(wrapped) == "rate_limited"
        assert not is_fatal(wrapped)


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (anthropic.BadRequestError, 400),
        (anthropic.AuthenticationError, 401),
        (anthropic.PaymentRequiredError, 402),
        (anthropic.PermissionDeniedError, 403),
        (anthropic.NotFoundError, 404),
        (anthropic.ContentTooLargeError, 413),
        (anthropic.UnprocessableEntityError, 422),
    ],
)
def test_it_calls_client_errors_fatal(cls, status):
    exc = status_error(cls, status)
    assert classify(exc) == "error"
    assert is_fatal(exc)


def test_it_calls_a_client_error_retryable_when_the_server_says_so():
    exc = status_error(anthropic.BadRequestError, 400, headers={"x-should-retry": "true"})
    assert not is_fatal(exc)


def test_it_calls_a_server_error_fatal_when_the_server_says_not_to_retry():
    exc = status_error(anthropic.InternalServerError, 500, headers={"x-should-retry": "false"})
    assert is_fatal(exc)
    assert fallback_may_help(exc)


def test_it_calls_an_exception_from_our_own_code_fatal():
    assert is_fatal(KeyError("content"))
    assert not fallback_may_help(KeyError("content"))


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (anthropic.NotFoundError, 404),
        (anthropic.BadRequestError, 400),
        (anthropic.PermissionDeniedError, 403),
    ],
)
def test_it_falls_back_after_errors_another_model_may_not_have(cls, status):
    assert fallback_may_help(status_error(cls, status))


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (anthropic.AuthenticationError, 401),
        (anthropic.PaymentRequiredError, 402),
        (anthropic.ContentTooLargeError, 413),
    ],
)
def test_it_does_not_fall_back_after_errors_every_model_would_repeat(cls, status):
    assert not fallback_may_help(status_error(cls, status))


def test_it_falls_back_once_a_transient_failure_outlasts_the_retries():
    assert fallback_may_help(status_error(anthropic.OverloadedError, 529))
    assert fallback_may_help(anthropic.APITimeoutError(request=REQUEST))


def test_it_reads_retry_after_from_an_sdk_exceptions_response():
    exc = status_error(anthropic.RateLimitError, 429, headers={"retry-after": "5"})
    assert retry_after_from_headers(exc.response.headers, now=NOW) == 5.0


@pytest.mark.parametrize(
    "exc",
    [
        status_error(anthropic.RateLimitError, 429),
        status_error(anthropic.OverloadedError, 529),
        status_error(anthropic.NotFoundError, 404),
        status_error(anthropic.InternalServerError, 500),
        anthropic.APITimeoutError(request=REQUEST),
        anthropic.APIConnectionError(request=REQUEST),
        ValueError("bug"),
    ],
)
def test_it_only_classifies_into_outcomes_the_limit_and_the_breaker_understand(exc):
    outcome = classify(exc)
    assert outcome in OUTCOMES
    counts_as_failure(outcome)
