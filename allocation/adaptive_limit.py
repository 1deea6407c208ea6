"""How many calls one model may have in flight: AIMD steered by 429s, overloads and latency.

Modelled on Netflix concurrency-limits: this class only turns samples into a number. Whoever sends
requests reads `limit` and `paused_until` and enforces them (a semaphore, a Redis counter).

Each finished call is a sample (RTT, calls in flight when it started, outcome):
- A drop is a 429, an overload (529), a client-side timeout, or a success after which the smoothed
  RTT has risen past `latency_tolerance` times the baseline RTT. A 429 is the server saying
  outright that we are too fast, so it halves the limit; the others are hints and cut it by 10%.
- At most one cut per `decrease_cooldown_s`: twenty 429s from one burst describe one overshoot.
- Otherwise the limit grows by 1 after a window of successes about as large as the limit (TCP
  congestion avoidance: one step per "round trip" of the whole window), but only from samples
  taken with at least half the limit in flight. A limit we never use says nothing about whether
  a larger one is safe, and would otherwise creep to the maximum (the app-limited rule).
- Generic errors are neutral: a 500 or a refused connection says the model is broken, not that we
  are too fast. The circuit breaker owns that.
- RTT: a fast EWMA tracks the present; a slow one is the baseline, what the model costs when
  healthy. Only successes feed them: errors are fast and timeouts are capped, so both would lie.
- Response headers: when anthropic-ratelimit-*-remaining falls under 10% of its limit, growth
  holds, since the next step would only buy a 429. A retry-after sets `paused_until`.
- The limit always stays within [min_limit, max_limit].
"""

import math
from dataclasses import dataclass

from allocation.outcomes import CallOutcome
from allocation.outcomes import outcome as as_outcome

OUTCOMES = frozenset(CallOutcome)


@dataclass(frozen=True)
class AimdParams:
    # A cold model starts high enough that a few readings' parallel calls are not serialised
    # on the first minute (the admin's max_concurrent_calls caps it separately), yet far
    # below the ceiling, so a fresh deploy probes upwards rather than stampeding.
    initial_limit: int = 20
    # Never zero: with nothing in flight there would be no sample to learn from.
    min_limit: int = 1
    # A ceiling against runaway growth; other processes share the same API key.
    max_limit: int = 200
    # Latency, overload and timeouts are hints: a gentle cut lets the limit hover near the knee.
    backoff_ratio: float = 0.9
    # A 429 is certain: halve, as TCP does on loss.
    rate_limit_backoff_ratio: float = 0.5
    # One step per window of successes as large as the limit: linear growth per round trip.
    additive_increase: int = 1
    # LLM latency is noisy; twice the usual means we are queueing somewhere.
    latency_tolerance: float = 2.0
    # The fast EWMA remembers roughly the last ten samples.
    rtt_smoothing: float = 0.1
    # The baseline remembers roughly the last hundred, so a slowdown is caught before it
    # becomes the new normal.
    baseline_smoothing: float = 0.01
    # 429s from one burst land within milliseconds of each other; a second later is news.
    decrease_cooldown_s: float = 1.0
    # Samples taken with less than this fraction of the limit in flight cannot grow it.
    app_limited_ratio: float = 0.5
    # Below this fraction of the server's remaining quota, growth holds.
    headroom_ratio: float = 0.1

    def __post_init__(self):
        if not 1 <= self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= initial_limit <= max_limit")
        for name in ("backoff_ratio", "rate_limit_backoff_ratio"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be between 0 and 1")


class AimdLimit:
    def __init__(self, params: AimdParams | None = None):
        self.params = params or AimdParams()
        self._limit = self.params.initial_limit
        self._successes = 0  # toward the next increase
        self._last_decrease_at = -math.inf
        self._smoothed_rtt: float | None = None
        self._baseline_rtt: float | None = None
        self._headroom_low = False
        self._paused_until = 0.0
        self._last_reason = "initial"

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def paused_until(self) -> float:
        """Send nothing before this time (same clock as `now`): the server asked us to wait."""
        return self._paused_until

    def is_paused(self, now: float) -> bool:
        return now < self._paused_until

    def on_sample(self, *, now: float, rtt_s: float, in_flight: int, outcome: str) -> None:
        """Learn from one finished call.

        `in_flight` counts the calls in flight when this one started, itself included. `rtt_s`
        should be comparable between calls: when output lengths vary widely, pass time to first
        token or seconds per output token rather than the whole duration.
        """
        outcome = as_outcome(outcome)
        if outcome is CallOutcome.RATE_LIMITED:
            self._decrease(now, self.params.rate_limit_backoff_ratio, "rate_limited")
        elif outcome in (CallOutcome.OVERLOADED, CallOutcome.TIMEOUT):
            self._decrease(now, self.params.backoff_ratio, str(outcome))
        elif outcome is CallOutcome.OK:
            self._observe_rtt(rtt_s)
            if self._latency_too_high():
                self._decrease(now, self.params.backoff_ratio, "latency")
            else:
                self._maybe_increase(in_flight)

    def on_headers(
        self,
        *,
        now: float,
        requests_remaining: int | None,
        requests_limit: int | None,
        retry_after_s: float | None,
        tokens_remaining: int | None = None,
        tokens_limit: int | None = None,
    ) -> None:
        """Learn from the anthropic-ratelimit-* and retry-after headers of any response."""
        quotas = [(requests_remaining, requests_limit), (tokens_remaining, tokens_limit)]
        known = [(rem, lim) for rem, lim in quotas if rem is not None and lim]
        # Headers that say nothing leave the previous verdict standing.
        if known:
            self._headroom_low = any(rem < self.params.headroom_ratio * lim for rem, lim in known)
        if retry_after_s is not None and retry_after_s > 0:
            self._paused_until = max(self._paused_until, now + retry_after_s)

    def snapshot(self) -> dict:
        return {
            "limit": self._limit,
            "baseline_rtt": self._baseline_rtt,
            "smoothed_rtt": self._smoothed_rtt,
            "last_reason": self._last_reason,
            "headroom_low": self._headroom_low,
            "paused_until": self._paused_until,
        }

    def to_dict(self) -> dict:
        """JSON-safe state, so every worker process can share one controller per model."""
        return {
            "limit": self._limit,
            "successes": self._successes,
            "last_decrease_at": None
            if math.isinf(self._last_decrease_at)
            else self._last_decrease_at,
            "smoothed_rtt": self._smoothed_rtt,
            "baseline_rtt": self._baseline_rtt,
            "headroom_low": self._headroom_low,
            "paused_until": self._paused_until,
            "last_reason": self._last_reason,
        }

    @classmethod
    def from_dict(cls, data: dict | None, params: "AimdParams | None" = None) -> "AimdLimit":
        limit = cls(params)
        if not data:
            return limit
        p = limit.params
        limit._limit = min(p.max_limit, max(p.min_limit, int(data.get("limit", p.initial_limit))))
        limit._successes = int(data.get("successes", 0))
        last = data.get("last_decrease_at")
        limit._last_decrease_at = -math.inf if last is None else float(last)
        limit._smoothed_rtt = data.get("smoothed_rtt")
        limit._baseline_rtt = data.get("baseline_rtt")
        limit._headroom_low = bool(data.get("headroom_low", False))
        limit._paused_until = float(data.get("paused_until", 0.0))
        limit._last_reason = data.get("last_reason", "initial")
        return limit

    def _observe_rtt(self, rtt_s: float) -> None:
        if self._smoothed_rtt is None or self._baseline_rtt is None:
            self._smoothed_rtt = self._baseline_rtt = rtt_s
            return
        fast, slow = self.params.rtt_smoothing, self.params.baseline_smoothing
        self._smoothed_rtt += fast * (rtt_s - self._smoothed_rtt)
        self._baseline_rtt += slow * (rtt_s - self._baseline_rtt)

    def _latency_too_high(self) -> bool:
        if self._smoothed_rtt is None or not self._baseline_rtt:
            return False
        return self._smoothed_rtt > self.params.latency_tolerance * self._baseline_rtt

    def _maybe_increase(self, in_flight: int) -> None:
        if self._headroom_low:
            return
        if in_flight < self.params.app_limited_ratio * self._limit:
            return
        self._successes += 1
        if self._successes >= self._limit:
            self._successes = 0
            if self._limit < self.params.max_limit:
                self._limit = min(
                    self.params.max_limit, self._limit + self.params.additive_increase
                )
                self._last_reason = "increase"

    def _decrease(self, now: float, ratio: float, reason: str) -> None:
        if now - self._last_decrease_at < self.params.decrease_cooldown_s:
            return
        self._last_decrease_at = now
        self._successes = 0
        # The epsilon keeps float noise (e.g. 0.9 * 30) from costing an extra unit.
        self._limit = max(self.params.min_limit, math.floor(self._limit * ratio + 1e-9))
        self._last_reason = reason
