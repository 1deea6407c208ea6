"""Calling a model for one task: bounded retries, then the allocation's fallbacks.

The SDK runs with max_retries=0, so every attempt passes through here: each is logged (429s
and failures too), 429s wait out retry-after and count as rate-limit hits, and a model that
is overloaded, erroring or timing out hands the task to the next model in the allocation.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import anthropic
from django.utils import timezone

from allocation.allocator import AllocationConfig
from allocation.client_pool import runtime
from allocation.models import CallOutcome
from allocation.pricing import TokenUsage
from allocation.retry_policy import (
    RetryParams,
    backoff_delay,
    classify,
    fallback_may_help,
    is_fatal,
    retry_after_from_headers,
)
from allocation.usage import Attempt

DEFAULT_TEMPERATURE = 1.0
DEFAULT_RETRY = RetryParams()


class TaskFailed(Exception):
    """Every model in the allocation failed (or the failure cannot be retried)."""


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    attempts: int
    fell_back: bool


# gate(model) -> an async context manager held for the duration of one HTTP call: the
# per-reading bound and, where configured, the global limiter.
Gate = Callable[[str], AbstractAsyncContextManager]
AttemptHook = Callable[[Attempt], Awaitable[None]]


async def complete(
    *,
    prompt: str,
    config: AllocationConfig,
    gate: Gate,
    on_attempt: AttemptHook,
    params: RetryParams = DEFAULT_RETRY,
    rng: random.Random | None = None,
    system: str | None = None,
) -> Completion:
    rng = rng or random.Random()
    client = runtime.pool.get()
    total_attempts = 0
    last_problem = "no model was tried"
    models = config.models
    for model_index, model in enumerate(models):
        is_last_model = model_index == len(models) - 1
        for attempt_on_model in range(1, params.max_attempts_per_model + 1):
            total_attempts += 1
            started_at = timezone.now()
            async with gate(model):
                t0 = time.monotonic()
                try:
                    raw = await client.messages.with_raw_response.create(
                        model=model,
                        max_tokens=config.max_tokens,
                        messages=[{"role": "user", "content": prompt}],
                        **({"system": system} if system else {}),
                        extra_body=_sampling(config),
                    )
                    message = await raw.parse()
                except anthropic.APIError as exc:
                    latency = time.monotonic() - t0
                    failure = exc
                else:
                    latency = time.monotonic() - t0
                    failure = None
            common = dict(
                task_type=config.task_type,
                requested_model=config.model,
                model=model,
                attempt=total_attempts,
                is_retry=attempt_on_model > 1,
                is_fallback=model_index > 0,
                latency_s=latency,
                started_at=started_at,
            )
            if failure is None:
                usage = message.usage
                await on_attempt(
                    Attempt(
                        outcome=CallOutcome.OK,
                        status_code=raw.http_response.status_code,
                        request_id=raw.request_id or "",
                        usage=TokenUsage(
                            input_tokens=usage.input_tokens,
                            output_tokens=usage.output_tokens,
                            cache_read_tokens=usage.cache_read_input_tokens or 0,
                            cache_write_tokens=usage.cache_creation_input_tokens or 0,
                        ),
                        **common,
                    )
                )
                text = "".join(block.text for block in message.content if block.type == "text")
                return Completion(
                    text=text, model=model, attempts=total_attempts, fell_back=model_index > 0
                )

            outcome = classify(failure)
            status = getattr(failure, "status_code", None)
            headers = (
                failure.response.headers if isinstance(failure, anthropic.APIStatusError) else {}
            )
            last_problem = f"{model}: {outcome} ({status or type(failure).__name__}): {failure}"
            await on_attempt(
                Attempt(
                    outcome=outcome,
                    status_code=status,
                    request_id=(headers.get("request-id") or "") if headers else "",
                    error=str(failure),
                    **common,
                )
            )
            if is_fatal(failure):
                if not fallback_may_help(failure):
                    raise TaskFailed(last_problem) from failure  # every model would say the same
                break  # e.g. a model this key cannot use: the next one may serve
            out_of_attempts = attempt_on_model == params.max_attempts_per_model
            if outcome != CallOutcome.RATE_LIMITED and not is_last_model:
                break  # overloaded, erroring or timing out: hand the task on now
            if out_of_attempts:
                break
            delay = backoff_delay(
                attempt_on_model,
                retry_after=retry_after_from_headers(headers, now=time.time()),
                rng=rng,
                initial=params.initial_delay_s,
                max_delay=params.max_delay_s,
            )
            await asyncio.sleep(delay)
    raise TaskFailed(f"All models failed for {config.task_type}; last: {last_problem}")


def _sampling(config: AllocationConfig) -> dict:
    """The SDK's 1.x signature dropped temperature, so it travels in the request body. The
    API's default (1.0) is left out: models newer than Opus 4.6 reject any explicit value."""
    if config.temperature == DEFAULT_TEMPERATURE:
        return {}
    return {"temperature": config.temperature}
