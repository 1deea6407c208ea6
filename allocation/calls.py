"""Calling a model for one task: bounded retries, then the allocation's fallbacks.

The SDK runs with max_retries=0, so every attempt passes through here: each is logged (429s
and failures too), 429s wait out retry-after and count as rate-limit hits, and a model that
is overloaded, erroring, timing out or behind an open circuit breaker hands the task to the
next model in the allocation.
"""

import asyncio
import dataclasses
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import httpx2
from asgiref.sync import sync_to_async
from django.utils import timezone

from allocation import stream_reader
from allocation.allocator import AllocationConfig
from allocation.client_pool import runtime
from allocation.failover_cost import skipped_fallbacks
from allocation.limiter import BreakerOpen, LogRow, Permit
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage
from allocation.prompt import Prompt, estimate_tokens
from allocation.retry_policy import (
    RetryParams,
    backoff_delay,
    classify,
    fallback_may_help,
    is_fatal,
    retry_after_from_headers,
)
from allocation.stream_reader import StreamedMessage
from allocation.usage import Attempt, forget_unsent
from allocation.warm_prefixes import warm_prefixes

# The API's default temperature; sent explicitly, models newer than Opus 4.6 reject it.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_RETRY = RetryParams()


class TaskFailed(Exception):
    """Every model in the allocation failed (or the failure cannot be retried)."""


class InvalidAnswer(anthropic.APIError):
    """The model answered, but not in the form asked for (AnswerFormat.result): a failed
    attempt, logged as an error and paid for, that the next attempt or model may cure."""

    def __init__(self, message: str):
        request = httpx2.Request("POST", "/v1/messages")
        super().__init__(f"Invalid answer: {message}", request, body=None)


class AnswerFormat(Protocol):
    """What a call asks for beyond the prompt, and how its answer is read."""

    def request(self) -> dict: ...  # extra arguments of the Messages API call (tools...)

    def start(self) -> None: ...  # a new attempt begins

    def feed(self, event: dict) -> list[tuple[Any, str]]: ...  # (key, new text) in an event

    def result(self, message) -> Any: ...  # the validated answer, or InvalidAnswer


class PlainText:
    """A free-text answer: every text delta as it comes, the text blocks at the end."""

    def request(self) -> dict:
        return {}

    def start(self) -> None:
        pass

    def feed(self, event: dict) -> list[tuple[Any, str]]:
        if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
            return [(None, event["delta"]["text"])]
        return []

    def result(self, message) -> str:
        return "".join(b.text for b in message.content if b.type == "text")


# on_text(key, text): new text of the attempt under way (key: the answer format's, e.g. a
# position index). Called as the stream arrives; a failed attempt is reported to on_attempt.
TextHook = Callable[[Any, str], Awaitable[None]]


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    attempts: int
    fell_back: bool
    result: Any = None  # what the answer format made of the answer


# gate(model, input_estimate, max_tokens, log_row=) -> an async context manager held for one
# HTTP call: the per-reading bound and the global limiter. It yields a Permit, left through one
# of its exits; its call_id is the call's log row if the limiter wrote it (LogRow).
Gate = Callable[[str, int, int], AbstractAsyncContextManager[Permit]]
AttemptHook = Callable[[Attempt], Awaitable[None]]
# on_send(attempt) -> the id of the call's log row, written pending just before the request
# leaves (allocation/usage.py open_call); the attempt ends with that id in its call_id.
SendHook = Callable[[Attempt], Awaitable[int]]
# opening(attempt) -> that row as a statement (allocation/usage.py opening), for the limiter to
# write with the call's admission; on_send writes it where the limiter did not.
OpeningHook = Callable[[Attempt], tuple[str, list]]


@dataclass
class _Sent:
    """One HTTP call's result: the message, or the SDK's exception."""

    attempt: Attempt
    message: anthropic.types.Message | None = None
    failure: anthropic.APIError | None = None
    headers: dict | None = None
    result: Any = None


def estimate_input_tokens(prompt: Prompt) -> int:
    return estimate_tokens(prompt.text)


async def complete(
    *,
    prompt: Prompt,
    config: AllocationConfig,
    gate: Gate,
    on_attempt: AttemptHook,
    on_send: SendHook | None = None,
    opening: OpeningHook | None = None,
    params: RetryParams = DEFAULT_RETRY,
    rng: random.Random | None = None,
    answer: AnswerFormat | None = None,
    on_text: TextHook | None = None,
) -> Completion:
    """Every attempt streams: on_text hears the answer's text as it arrives."""
    rng = rng or random.Random()
    answer = answer or PlainText()
    attempts = 0
    last_problem = "no model was tried"
    models, skipped = await _models_within_ceiling(config, prompt)
    # An overloaded provider (or circuits opened by it) is waited out, round after round of
    # the models, until the allocation's patience is spent: overloads come in waves of
    # seconds to minutes, and a task that gives up in the first second throws away what its
    # reading has already paid for.
    patience_ends = time.monotonic() + config.overload_patience_s
    for round_number in itertools.count(1):
        waiting_out = False  # the round ended on an overload or open circuits
        for model_index, model in enumerate(models):
            is_last_model = model_index == len(models) - 1
            for attempt_on_model in range(1, params.max_attempts_per_model + 1):
                try:
                    sent = await _send(
                        model=model,
                        prompt=prompt,
                        config=config,
                        gate=gate,
                        on_send=on_send,
                        opening=opening,
                        attempt=attempts + 1,
                        is_retry=attempt_on_model > 1 or round_number > 1,
                        is_fallback=model_index > 0,
                        answer=answer,
                        on_text=on_text,
                    )
                except BreakerOpen:
                    last_problem = f"{model}: circuit open after repeated failures"
                    waiting_out = True
                    break  # straight to the next model, no call made
                attempts += 1
                await on_attempt(sent.attempt)
                if sent.failure is None:
                    text = "".join(b.text for b in sent.message.content if b.type == "text")
                    return Completion(
                        text=text,
                        model=model,
                        attempts=attempts,
                        fell_back=model_index > 0,
                        result=sent.result,
                    )

                failure, outcome = sent.failure, sent.attempt.outcome
                why = sent.attempt.status_code or type(failure).__name__
                last_problem = f"{model}: {outcome} ({why}): {failure}"
                waiting_out = outcome == CallOutcome.OVERLOADED
                if is_fatal(failure):
                    if not fallback_may_help(failure):
                        raise TaskFailed(last_problem) from failure  # every model would say so
                    break  # e.g. a model this key cannot use: the next one may serve
                # A 429 or a 529 is transient: the same model, after a backoff, is the cheaper
                # bet than a fallback that may cost several times as much. Errors and timeouts
                # hand the task on now.
                transient = outcome in (CallOutcome.RATE_LIMITED, CallOutcome.OVERLOADED)
                # An answer in the wrong form gets one more try on its model: usually a slip.
                slip = isinstance(failure, InvalidAnswer) and attempt_on_model < 2
                if not (transient or slip) and not is_last_model:
                    break
                if attempt_on_model == params.max_attempts_per_model:
                    break
                await asyncio.sleep(
                    backoff_delay(
                        attempt_on_model,
                        retry_after=retry_after_from_headers(sent.headers or {}, now=time.time()),
                        rng=rng,
                        initial=params.initial_delay_s,
                        max_delay=params.max_delay_s,
                    )
                )
        if not waiting_out:
            break
        left_s = patience_ends - time.monotonic()
        if left_s <= 0:
            last_problem += f" (waited out {config.overload_patience_s:g} s of overload)"
            break
        pause = backoff_delay(round_number, retry_after=None, rng=rng, max_delay=params.max_delay_s)
        await asyncio.sleep(min(pause, left_s))
    if skipped:
        last_problem += "; " + "; ".join(skipped.values())
    raise TaskFailed(f"All models failed for {config.task_type}; last: {last_problem}")


async def _models_within_ceiling(config: AllocationConfig, prompt: Prompt):
    """The models this call may use, in order, and the fallbacks the allocation's cost
    ceiling rules out (with why). Decided before the first attempt, so "the last model" means
    the last one the call may really use."""
    models = config.models
    if config.fallback_cost_ceiling is None or len(models) < 2:
        return models, {}
    skipped = await sync_to_async(skipped_fallbacks)(
        config.model,
        models[1:],
        config.fallback_cost_ceiling,
        input_tokens=estimate_input_tokens(prompt),
        max_tokens=config.max_tokens,
    )
    return [m for m in models if m not in skipped], skipped


async def _send(
    *,
    model,
    prompt,
    config,
    gate,
    attempt,
    is_retry,
    is_fallback,
    answer=None,
    on_text=None,
    on_send=None,
    opening=None,
) -> _Sent:
    answer = answer or PlainText()
    client = runtime.pool.get()
    request_tokens = estimate_input_tokens(prompt)
    # Cache reads are not charged to the input-tokens bucket: leave out what is warm.
    input_estimate = max(1, request_tokens - warm_prefixes.cached_tokens(model, prompt))

    def pending(started_at) -> Attempt:
        return Attempt(
            task_type=config.task_type,
            requested_model=config.model,
            model=model,
            outcome=CallOutcome.PENDING,
            attempt=attempt,
            is_retry=is_retry,
            is_fallback=is_fallback,
            latency_s=0.0,
            started_at=started_at,
            # What a lost call is priced from: the whole request, cached parts too.
            usage=TokenUsage(input_tokens=request_tokens),
        )

    log_row = None
    if opening is not None:
        # Its started_at is the admission's; the row's completion stamps when it left.
        log_row = LogRow(insert=lambda: opening(pending(timezone.now())), delete=forget_unsent)
    async with gate(model, input_estimate, config.max_tokens, log_row=log_row) as permit:
        # Stamped when the request leaves, not when it began to queue.
        sent_as = pending(timezone.now())
        call_id = permit.call_id
        if call_id is None and on_send is not None:
            call_id = await on_send(sent_as)
        sent_as = dataclasses.replace(sent_as, call_id=call_id)
        t0 = time.monotonic()
        answer.start()
        try:
            # The SDK's lower-level interface: its request, our reading of the events
            # (allocation/stream_reader.py).
            async with client.messages.with_streaming_response.create(
                model=model,
                max_tokens=config.max_tokens,
                **prompt.request(),
                **answer.request(),
                extra_body=_sampling(config),
                stream=True,
            ) as response:
                headers = dict(response.headers)
                status_code = response.status_code
                request_id = headers.get("request-id", "")
                streamed = StreamedMessage()
                try:
                    async for event in stream_reader.events(client, response.http_response):
                        streamed.add(event)
                        for key, text in answer.feed(event):
                            if on_text is not None:
                                await on_text(key, text)
                except httpx2.HTTPError as exc:
                    # The connection broke or stalled mid-stream: as the SDK reports it when
                    # that happens before the response.
                    raise _transport_error(exc) from exc
            message = streamed.message()
            result = answer.result(message)
        except anthropic.APIError as exc:
            latency = time.monotonic() - t0
            sent = _failed(exc, sent_as, latency)
            if isinstance(exc, InvalidAnswer):
                # The provider served the call (and billed it): the limits count its tokens.
                usage = TokenUsage.from_anthropic(message.usage)
                sent.attempt = dataclasses.replace(
                    sent.attempt,
                    usage=usage,
                    status_code=status_code,
                    request_id=request_id,
                )
                sent.headers = headers
                permit.success(
                    latency_s=latency,
                    input_tokens=usage.input_tokens + usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                    headers=headers,
                )
            elif sent.attempt.outcome == CallOutcome.RATE_LIMITED:
                permit.rate_limited(latency_s=latency, headers=sent.headers)
            else:
                permit.failed(sent.attempt.outcome, latency_s=latency, headers=sent.headers)
            return sent
        latency = time.monotonic() - t0
        usage = TokenUsage.from_anthropic(message.usage)
        warm_prefixes.saw(model, prompt, usage.cache_read_tokens + usage.cache_write_tokens)
        permit.success(
            latency_s=latency,
            # What counts against an input-tokens-per-minute limit: cache reads do not.
            input_tokens=usage.input_tokens + usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            headers=headers,
        )
    return _Sent(
        attempt=dataclasses.replace(
            sent_as,
            outcome=CallOutcome.OK,
            latency_s=latency,
            usage=usage,
            status_code=status_code,
            request_id=request_id,
        ),
        message=message,
        headers=headers,
        result=result,
    )


def _transport_error(exc: httpx2.HTTPError) -> anthropic.APIConnectionError:
    request = httpx2.Request("POST", "/v1/messages")
    if isinstance(exc, httpx2.TimeoutException):
        return anthropic.APITimeoutError(request=request)
    return anthropic.APIConnectionError(message=f"Connection error: {exc}", request=request)


def _failed(exc, sent_as: Attempt, latency: float) -> _Sent:
    """The attempt `sent_as` as it failed with `exc`: it used no tokens."""
    status = getattr(exc, "status_code", None)
    headers = dict(exc.response.headers) if isinstance(exc, anthropic.APIStatusError) else {}
    return _Sent(
        attempt=dataclasses.replace(
            sent_as,
            outcome=classify(exc),
            latency_s=latency,
            usage=TokenUsage(),
            status_code=status,
            request_id=headers.get("request-id", ""),
            error=str(exc),
        ),
        failure=exc,
        headers=headers,
    )


def request_params(model: str, prompt: Prompt, config: AllocationConfig) -> dict:
    """The Messages API body of one call, as a Message Batches request's params."""
    return {
        "model": model,
        "max_tokens": config.max_tokens,
        **prompt.request(),
        **_sampling(config),
    }


def _sampling(config: AllocationConfig) -> dict:
    """The SDK's 1.x signature dropped temperature, so it travels in the request body. The
    API's default (1.0) is left out: models newer than Opus 4.6 reject any explicit value."""
    if config.temperature == DEFAULT_TEMPERATURE:
        return {}
    return {"temperature": config.temperature}
