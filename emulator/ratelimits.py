"""Per-model rate limits (requests, input tokens, output tokens) and their response headers.

Anthropic limits each model separately, so every model id gets its own three buckets.

What a request is charged, and when, all at admission:
- requests: 1.
- input tokens: input_tokens + cache_creation_input_tokens. Cache reads are free against the
  limit, as on Anthropic's current models, which is what makes caching raise throughput.
- output tokens: the request's max_tokens, as Anthropic estimates them when a request starts
  (the answer's length is not known yet). Admission asks for that much in the bucket (at most
  a full bucket); when the answer ends, the unused part is given back (`give_back`), as
  Anthropic corrects its estimate to the tokens really written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .buckets import TokenBucket
from .knobs import BUCKET_KNOBS, Knobs, limit

HEADER_PREFIX = "anthropic-ratelimit-"


@dataclass
class ModelBuckets:
    requests: TokenBucket | None
    input_tokens: TokenBucket | None
    output_tokens: TokenBucket | None

    def named(self) -> list[tuple[str, TokenBucket]]:
        pairs = [
            ("requests", self.requests),
            ("input-tokens", self.input_tokens),
            ("output-tokens", self.output_tokens),
        ]
        return [(name, bucket) for name, bucket in pairs if bucket is not None]


class RateLimiter:
    def __init__(self, knobs: Knobs, clock: Callable[[], float]):
        self._knobs = knobs
        self._clock = clock
        self._by_model: dict[str, ModelBuckets] = {}

    def update(self, knobs: Knobs) -> None:
        """Take new knobs; if the limits changed, every model starts again with full buckets."""
        if any(getattr(knobs, name) != getattr(self._knobs, name) for name in BUCKET_KNOBS):
            self._by_model.clear()
        self._knobs = knobs

    def reset(self) -> None:
        self._by_model.clear()

    def admit(self, model: str, input_cost: int, output_cost: int) -> tuple[float, dict[str, str]]:
        """(seconds to wait, headers). Charges every bucket when the wait is 0, none otherwise,
        so a refused request costs nothing. `output_cost`: the request's max_tokens."""
        buckets = self._buckets(model)
        waits = [
            buckets.requests.wait_s(1) if buckets.requests else 0.0,
            buckets.input_tokens.wait_s(input_cost) if buckets.input_tokens else 0.0,
            buckets.output_tokens.wait_s(output_cost) if buckets.output_tokens else 0.0,
        ]
        wait = max(waits)
        if wait == 0:
            for bucket, cost in (
                (buckets.requests, 1),
                (buckets.input_tokens, input_cost),
                (buckets.output_tokens, output_cost),
            ):
                if bucket is not None:
                    bucket.take(cost)
        return wait, self._headers(buckets)

    def give_back(self, model: str, output_tokens: int) -> None:
        """A request has ended: the part of its max_tokens it did not write returns."""
        bucket = self._buckets(model).output_tokens
        if bucket is not None and output_tokens > 0:
            bucket.give_back(output_tokens)

    def headers(self, model: str) -> dict[str, str]:
        """The model's current headers, charging nothing (for 429s refused before the buckets)."""
        return self._headers(self._buckets(model))

    def _buckets(self, model: str) -> ModelBuckets:
        buckets = self._by_model.get(model)
        if buckets is None:
            k = self._knobs

            def bucket(per_minute: int | None) -> TokenBucket | None:
                per_minute = limit(per_minute)
                return TokenBucket(per_minute, k.burst_s, self._clock) if per_minute else None

            buckets = ModelBuckets(bucket(k.rpm), bucket(k.itpm), bucket(k.otpm))
            self._by_model[model] = buckets
        return buckets

    @staticmethod
    def _headers(buckets: ModelBuckets) -> dict[str, str]:
        headers = {}
        now = time.time()
        for name, bucket in buckets.named():
            # Whole seconds, rounded up, so a client sleeping until `reset` finds it full.
            reset = datetime.fromtimestamp(math.ceil(now + bucket.full_in_s()), UTC)
            headers[f"{HEADER_PREFIX}{name}-limit"] = str(int(bucket.per_minute))
            headers[f"{HEADER_PREFIX}{name}-remaining"] = str(bucket.remaining())
            headers[f"{HEADER_PREFIX}{name}-reset"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        return headers


def retry_after_header(seconds: float) -> str:
    """Anthropic sends whole seconds; round up so the retry is not refused again, at least 1."""
    return str(max(1, math.ceil(seconds)))
