"""Every setting that shapes how the emulator behaves, with the defaults a demo wants.

The defaults are a calm, unlimited Anthropic: 300 ms to the first token, 5 ms per token after
that, no rate limits and no failures. Tests and benchmarks turn the knobs they need.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Changing any of these rebuilds the rate-limit buckets (full again), because a bucket's
# capacity and refill rate come from them.
BUCKET_KNOBS = frozenset({"rpm", "itpm", "otpm", "burst_s"})


@dataclass(frozen=True)
class Knobs:
    # --- Latency. A request takes ttft_ms + output_tokens * ms_per_token, each scaled by one
    # factor drawn from [1 - jitter, 1 + jitter]; jitter 0 keeps every run identical.
    ttft_ms: float = 300.0
    ms_per_token: float = 5.0
    jitter: float = 0.0

    # --- Rate limits, per model as on Anthropic (each model id gets its own buckets).
    # Requests / input tokens / output tokens per minute; 0 or None means unlimited.
    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    # Bucket capacity in seconds of refill. Anthropic may enforce a per-minute limit over
    # shorter intervals, so a whole minute's requests cannot arrive in one burst.
    burst_s: float = 1.0
    # Requests served at once, over all models; 0 means unlimited. One more gets a 429, the
    # way Anthropic answers an acceleration spike, rather than being queued.
    max_concurrency: int = 0

    # --- Injected failures, drawn from random.Random(seed) so a run can be replayed.
    overloaded_rate: float = 0.0  # 529 overloaded_error
    # The share of streams cut halfway by an overloaded_error event on the 200 response, as
    # Anthropic does under load.
    midstream_fail_rate: float = 0.0
    error_rate: float = 0.0  # 500 api_error
    hang_rate: float = 0.0  # no answer for hang_s, so the client's timeout fires
    hang_s: float = 600.0
    seed: int = 0

    # --- Forced failures, for tests.
    overloaded_models: frozenset[str] = field(default_factory=frozenset)  # always 529
    failing_models: frozenset[str] = field(default_factory=frozenset)  # always 500
    # A stream from these models breaks halfway: an overloaded_error event after half the
    # answer (Anthropic sends errors mid-stream on the 200 response).
    broken_stream_models: frozenset[str] = field(default_factory=frozenset)
    force_429: int = 0  # the next N requests get 429; counts down as they arrive
    retry_after_s: float = 1.0  # retry-after for forced and concurrency 429s

    # --- Prompt caching: a cached prefix lives this long after its last use (Anthropic: 5
    # minutes, or an hour for a block marked ttl "1h"). Prefixes shorter than the model's
    # minimum are not cached (Anthropic: 1,024 to 4,096 tokens by model, see cache.py);
    # cache_min_tokens overrides that minimum for every model (0: short test prompts cache).
    cache_ttl_s: float = 300.0
    cache_ttl_1h_s: float = 3600.0
    cache_min_tokens: int | None = None

    # --- Message Batches: a batch's requests are processed batch_delay_s after it is
    # created (Anthropic: usually within an hour), one after another so that later requests
    # can read the cache earlier ones wrote; a batch not ended batch_expiry_s after creation
    # expires its unprocessed requests (Anthropic: 24 hours).
    batch_delay_s: float = 1.0
    batch_expiry_s: float = 86_400.0
    force_batch_rejects: int = 0  # the next N batch creations get 400 invalid_request_error

    # --- Length of an answer, chosen from a hash of the prompt, never above max_tokens.
    output_tokens_min: int = 120
    output_tokens_max: int = 320

    def __post_init__(self):
        # Accept lists (from JSON) or comma-separated text for the model sets.
        for name in ("overloaded_models", "failing_models", "broken_stream_models"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            object.__setattr__(self, name, frozenset(value or ()))
        problems = []
        for name in (
            "ttft_ms",
            "ms_per_token",
            "hang_s",
            "retry_after_s",
            "cache_ttl_s",
            "cache_ttl_1h_s",
            "batch_delay_s",
            "batch_expiry_s",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        for name in ("jitter", "overloaded_rate", "error_rate", "hang_rate", "midstream_fail_rate"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be between 0 and 1")
        if self.overloaded_rate + self.error_rate + self.hang_rate > 1:
            problems.append("overloaded_rate + error_rate + hang_rate must be <= 1")
        for name in ("rpm", "itpm", "otpm"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (0 or None: unlimited)")
        if self.burst_s <= 0:
            problems.append("burst_s must be > 0")
        if self.cache_min_tokens is not None and self.cache_min_tokens < 0:
            problems.append("cache_min_tokens must be >= 0 (None: each model's own minimum)")
        for name in ("max_concurrency", "force_429", "force_batch_rejects"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 1 <= self.output_tokens_min <= self.output_tokens_max:
            problems.append("need 1 <= output_tokens_min <= output_tokens_max")
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: Any) -> Knobs:
        """A copy with `changes` applied; unknown names raise ValueError naming them."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the model sets become sorted lists."""
        out = dataclasses.asdict(self)
        for name in ("overloaded_models", "failing_models", "broken_stream_models"):
            out[name] = sorted(out[name])
        return out


def limit(value: int | None) -> int | None:
    """A per-minute limit as a positive number, or None when unlimited (0 or None)."""
    return value if value else None
