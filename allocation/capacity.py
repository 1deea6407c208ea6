"""How many calls a minute a model's limits allow, and which limit binds: the provider's
buckets replayed.

Anthropic charges a call, when it starts, one request, its input tokens (cache writes
counted, cache reads not) and its whole max_tokens of output; when the call ends, the
unused part of max_tokens is given back. Each limit is a bucket holding `burst_s` seconds of
refill, and a charge larger than the bucket waits for a full one. A closed formula for the
rate would have to cover every case (a max_tokens above the bucket's size lets one call run
at a time, the refund arriving a call's latency later decides when the next may start), so
the buckets are replayed instead: calls always waiting, each admitted as soon as every
bucket allows it, for a few simulated minutes. Exact for this model of the provider, and a
few thousand steps.

Used by the limit advisor (allocation/limit_advisor.py: what a tighter max_tokens would
allow) and by the benches (the ceiling a run is measured against).
"""

import heapq
import math
from dataclasses import dataclass

from allocation.limiter.buckets import Limits, capacity

# The first minute starts with full buckets, a burst no later minute sees again: the rate is
# measured over the minutes after it.
WARM_UP_S = 60.0
MEASURED_S = 120.0
EPSILON = 1e-9

# What each limit is called where staff read it.
LIMIT_NAMES = {
    "rpm": "requests",
    "itpm": "input tokens",
    "otpm": "output tokens",
    "concurrency": "concurrency",
    "paused": "the provider's pause",
}


@dataclass(frozen=True)
class CallProfile:
    """One call as the limits see it."""

    input_tokens: int  # counted against the input limit (cache reads left out)
    max_tokens: int  # reserved from the output limit while the call runs
    output_tokens: int  # what the answer really used
    latency_s: float  # how long the call runs


@dataclass(frozen=True)
class Capacity:
    calls_per_minute: float
    binding: str  # "rpm", "itpm", "otpm" or "concurrency"; "" when nothing limits


def calls_per_minute(limits: Limits, calls: list[CallProfile], *, burst_s: float = 1.0) -> Capacity:
    """The steady rate at which `calls` (taken in turn, again and again) are admitted under
    `limits` (a per-minute figure of 0 means unlimited; so does a max_concurrent_calls of
    0), and the limit the calls waited for longest."""
    rates = {
        "rpm": limits.requests_per_minute / 60,
        "itpm": limits.input_tokens_per_minute / 60,
        "otpm": limits.output_tokens_per_minute / 60,
    }
    rates = {name: rate for name, rate in rates.items() if rate > 0}
    concurrency = limits.max_concurrent_calls or math.inf
    if not calls or (not rates and concurrency == math.inf):
        return Capacity(math.inf, "")
    sizes = {name: capacity(round(rate * 60), burst_s) for name, rate in rates.items()}
    levels = dict(sizes)
    running: list[tuple[float, float]] = []  # (ends at, output tokens it gives back)
    waited = dict.fromkeys([*rates, "concurrency"], 0.0)
    now, turn = 0.0, 0
    admitted: list[float] = []  # when, after the warm-up
    while now < WARM_UP_S + MEASURED_S:
        while running and running[0][0] <= now + EPSILON:
            _, give_back = heapq.heappop(running)
            if "otpm" in levels:
                levels["otpm"] = min(sizes["otpm"], levels["otpm"] + give_back)
        call = calls[turn % len(calls)]
        charges = {"rpm": 1, "itpm": call.input_tokens, "otpm": call.max_tokens}
        # How long each bucket needs to refill to what the call waits for.
        short = {
            name: (min(charges[name], sizes[name]) - levels[name]) / rates[name]
            for name in rates
            if levels[name] < min(charges[name], sizes[name]) - EPSILON
        }
        if len(running) >= concurrency:
            short["concurrency"] = running[0][0] - now
        if not short:
            for name in rates:
                levels[name] -= charges[name]
            heapq.heappush(running, (now + call.latency_s, call.max_tokens - call.output_tokens))
            if now >= WARM_UP_S:
                admitted.append(now)
            turn += 1
            continue
        binding = max(short, key=short.get)
        step = short[binding]
        if running:  # a call ending gives tokens and a slot back: look again then
            step = min(step, running[0][0] - now)
        step = max(step, EPSILON)
        if now >= WARM_UP_S:
            waited[binding] += step
        for name in rates:
            levels[name] = min(sizes[name], levels[name] + rates[name] * step)
        now += step
    # Admissions from the first to (not including) the last moment calls were admitted, over
    # that span: no edge effect of the window, even when calls are admitted several at once.
    span = admitted[-1] - admitted[0] if admitted else 0.0
    before_last = sum(1 for at in admitted if at < admitted[-1] - EPSILON)
    per_minute = before_last / span * 60 if span > 0 else math.inf
    return Capacity(
        round(per_minute, 2), max(waited, key=waited.get) if any(waited.values()) else ""
    )
