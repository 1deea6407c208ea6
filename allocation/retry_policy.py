"""What a careful retry looks like, after the anthropic SDK's own (anthropic/_base_client.py:
`_parse_retry_after_header`, `_calculate_retry_timeout`, `_should_retry`).

Meant for a client built with max_retries=0, so that every attempt is a sample for the adaptive
limit and the circuit breaker, and so that after a few attempts a reading moves on to the next
model instead of waiting on this one.

Where this differs from the SDK, on purpose:
- A retry-after above 60 s is ignored (exponential backoff applies instead): a reader is waiting,
  and a model that asks for minutes is better replaced by the fallback.
- Errors sent mid-stream arrive on the stream's 200 response; their body's error type
  ("overloaded_error", "rate_limit_error") decides, not the status code.
- 408 and 504 are classified as timeouts: the server telling us what a client timeout would.

What happens after an exception:
- `is_fatal(exc)`: the request is wrong, so repeating it on this model cannot succeed. That is
  every status the SDK would not retry (400, 401, 403, 404, 413, ... or x-should-retry: false),
  and any exception that comes neither from the SDK nor from a timeout (our own bug).
- `fallback_may_help(exc)`: whether the next model is worth a try once this one is given up on.
  Transient failures: yes, another model may be healthy. 404: yes, the model id is unknown or
  retired. 400 and 403: yes, because they are often model-specific (max_tokens above this model's
  ceiling, a parameter or feature it does not support, a key without access to it) and cost one
  fast, unbilled rejection; a truly malformed request still surfaces once the chain runs out.
  401 (bad key), 402 (billing) and 413 (body too large): no, every model would say the same.
"""

import email.utils
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import anthropic

from allocation.outcomes import CallOutcome


@dataclass(frozen=True)
class RetryParams:
    # The SDK's own default (two retries): a third failure in a row is a pattern, not bad luck.
    max_attempts_per_model: int = 3
    # The SDK's INITIAL_RETRY_DELAY: long enough to skip a blip, short for a waiting reader.
    initial_delay_s: float = 0.5
    # The SDK's MAX_RETRY_DELAY: beyond that, the fallback model is the better wait.
    max_delay_s: float = 8.0
    # A longer retry-after means "not soon": fall back rather than keep a reader waiting.
    max_retry_after_s: float = 60.0


# Statuses the SDK retries; anything else in 4xx is the request's fault.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# Fatal statuses after which another model may still answer (see the module docstring).
FALLBACK_STATUSES = frozenset({400, 403, 404})


def retry_after_from_headers(
    headers: Mapping[str, str],
    *,
    now: float,
    max_s: float = RetryParams.max_retry_after_s,
) -> float | None:
    """Seconds the server asks us to wait, or None when absent, unparsable or out of (0, max_s].

    `now` is Unix time (time.time()): a retry-after given as an HTTP date is measured from it.
    """
    seconds = _parse_retry_after(headers, now=now)
    if seconds is None or not 0 < seconds <= max_s:
        return None
    return seconds


def _parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    # retry-after-ms is non-standard but more precise than whole seconds, so it goes first.
    try:
        return float(_header(headers, "retry-after-ms")) / 1000
    except (TypeError, ValueError):
        pass
    value = _header(headers, "retry-after")
    try:
        # The spec says integer seconds; a float costs nothing to accept.
        return float(value)
    except (TypeError, ValueError):
        pass
    date = email.utils.parsedate_tz(value) if value else None
    if date is None:
        return None
    return float(email.utils.mktime_tz(date) - now)


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None,
    rng: random.Random,
    initial: float = RetryParams.initial_delay_s,
    max_delay: float = RetryParams.max_delay_s,
) -> float:
    """Seconds to wait after the `attempt`-th failed attempt (1 for the first failure).

    The server's retry-after wins. Otherwise initial * 2**(attempt-1), capped at max_delay, less up
    to 25% jitter (as the SDK does) so that calls which failed together do not retry together.
    """
    if attempt < 1:
        raise ValueError("attempt counts failed attempts, starting at 1")
    if retry_after is not None and retry_after > 0:
        return retry_after
    # The exponent is capped so that pow cannot overflow however long a caller keeps going.
    delay = min(initial * 2.0 ** min(attempt - 1, 1000), max_delay)
    return delay * (1 - 0.25 * rng.random())


def should_retry(status_code: int | None, headers: Mapping[str, str] | None = None) -> bool:
    """The SDK's rule. None stands for no response at all (connection error, timeout)."""
    # Non-standard, but when the server says it, it knows best.
    verdict = (_header(headers or {}, "x-should-retry") or "").strip().lower()
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    if status_code is None:
        return True
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def classify(exc: BaseException) -> CallOutcome:
    """How a failed call ended, in the terms of the call log, the limit and the breaker."""
    for err in _causes(exc):
        if isinstance(err, anthropic.APIStatusError):
            return _classify_status_error(err)
        # APITimeoutError is a kind of APIConnectionError, so it must be asked first.
        if isinstance(err, anthropic.APITimeoutError):
            return CallOutcome.TIMEOUT
        if isinstance(err, anthropic.APIConnectionError):
            return CallOutcome.ERROR
        # Our own deadline, e.g. asyncio.wait_for (asyncio.TimeoutError is TimeoutError).
        if isinstance(err, TimeoutError):
            return CallOutcome.TIMEOUT
    return CallOutcome.ERROR


def _classify_status_error(err: anthropic.APIStatusError) -> CallOutcome:
    return outcome_of_error(err.type, err.status_code)


def outcome_of_error(error_type: str | None, status_code: int | None = None) -> CallOutcome:
    """An error the provider named (`{"type": "error", "error": {"type": ...}}`, in an HTTP
    answer, mid-stream or in a batch result), in the terms of the call log."""
    if status_code == 429 or error_type == "rate_limit_error":
        return CallOutcome.RATE_LIMITED
    if status_code == 529 or error_type == "overloaded_error":
        return CallOutcome.OVERLOADED
    if status_code in (408, 504) or error_type == "timeout_error":
        return CallOutcome.TIMEOUT
    return CallOutcome.ERROR


def is_fatal(exc: BaseException) -> bool:
    """Must not be retried on this model: the request itself is wrong (see the module docstring)."""
    for err in _causes(exc):
        if isinstance(err, anthropic.APIStatusError):
            # A mid-stream error rides on a 200: overloaded or api_error, both transient.
            if err.status_code < 400:
                return False
            return not should_retry(err.status_code, err.response.headers)
        if isinstance(err, (anthropic.APIError, TimeoutError)):
            return False
    return True


def fallback_may_help(exc: BaseException) -> bool:
    """Once this model is given up on, is the next model in the chain worth a try?"""
    if not is_fatal(exc):
        return True
    for err in _causes(exc):
        if isinstance(err, anthropic.APIStatusError):
            # 5xx only gets here with x-should-retry: false; the fault is still the server's.
            return err.status_code in FALLBACK_STATUSES or err.status_code >= 500
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and what it was raised from, as the SDK walks it: `raise ... from err` keeps meaning."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx2.Headers ignores case, a plain dict does not.
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
