"""The limit advisor: per model and task type, which of the provider's limits held calls back
over the last hour and for how long, how long the answers really are against the
allocation's max_tokens, and what a tighter max_tokens would allow.

Anthropic holds a call's whole max_tokens against the output-tokens limit while it runs, so
a max_tokens far above the answers' length can leave room for one call at a time. What a
different max_tokens would allow is found by replaying the provider's buckets
(allocation/capacity.py) with the last hour's calls as they were (their input tokens,
answers and latencies) and only max_tokens changed. Changing max_tokens stays staff's
decision, made and validated in the allocation's form as ever: the advisor only says what
it would change.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from allocation.allocator import get_allocator
from allocation.capacity import LIMIT_NAMES, CallProfile, Capacity, calls_per_minute
from allocation.limiter import get_backend, get_params
from allocation.limiter.backends import read_limits
from allocation.limiter.buckets import Limits
from allocation.limiter.decisions import seconds_bound
from allocation.models import CallOutcome, LLMCall

WINDOW = timedelta(hours=1)
# A suggested max_tokens leaves this much room above the longest answers but one in a
# hundred, rounded up to a multiple of ROUND_TO: an answer cut short costs more than a slot.
HEADROOM = 1.25
ROUND_TO = 50
# The calls of the last hour read at most (the newest): enough for a p99, a bounded query.
MAX_CALLS = 20_000


@dataclass(frozen=True)
class TaskAdvice:
    task_type: str
    calls: int  # answered calls in the last hour
    max_tokens: int  # the allocation's
    p99_output_tokens: int
    longest_output_tokens: int
    # What the model's limits allow, every task of the model as it ran and this one's
    # max_tokens as allocated now, then as suggested (None: today's is already tight).
    calls_per_min: float
    readings_per_min: float | None
    suggested_max_tokens: int | None
    calls_per_min_suggested: float | None
    readings_per_min_suggested: float | None


@dataclass(frozen=True)
class ModelAdvice:
    model: str
    seconds_bound: dict[str, float]  # per limit ("rpm", "itpm", "otpm", "concurrency", ...)
    binding: str  # the limit that held calls back longest, "" if none did
    tasks: list[TaskAdvice]

    @property
    def binding_name(self) -> str:
        return LIMIT_NAMES.get(self.binding, self.binding)

    @property
    def bound_lines(self) -> list[tuple[str, str]]:
        """(limit, how long) for each limit that held calls back, longest first."""
        ranked = sorted(self.seconds_bound.items(), key=lambda item: -item[1])
        return [(LIMIT_NAMES.get(limit, limit), _duration(s)) for limit, s in ranked]


@dataclass
class _Observed:
    """One model's answered calls of one task type in the window."""

    inputs: list[int]
    outputs: list[int]
    latencies: list[float]

    def profile(self, max_tokens: int) -> CallProfile:
        n = len(self.outputs)
        return CallProfile(
            input_tokens=round(sum(self.inputs) / n),
            max_tokens=max_tokens,
            output_tokens=round(sum(self.outputs) / n),
            latency_s=sum(self.latencies) / n,
        )


def advise(*, now: datetime | None = None, model: str | None = None) -> list[ModelAdvice]:
    """Advice for every model that was called or held back in the last hour (or one)."""
    now = now or timezone.now()
    observed, readings = _observed(now, model)
    snapshots = get_backend().snapshots(now=now.timestamp(), model=model)
    since = (now - WINDOW).timestamp()
    models = sorted(set(observed) | set(snapshots))
    all_limits = read_limits(models)
    advice = []
    for name in models:
        bound = seconds_bound(snapshots[name].state, since=since) if name in snapshots else {}
        bound = {limit: round(seconds, 1) for limit, seconds in bound.items() if seconds}
        tasks = observed.get(name, {})
        limits = all_limits[name]
        advice.append(
            ModelAdvice(
                model=name,
                seconds_bound=bound,
                binding=max(bound, key=bound.get) if bound else "",
                tasks=[]
                if limits is None
                else [
                    _task_advice(task_type, tasks, limits, readings.get(name, 0))
                    for task_type in sorted(tasks)
                ],
            )
        )
    return advice


def allowed_with(
    model: str, task_type: str, max_tokens: int, *, now: datetime | None = None
) -> Capacity:
    """The model's calls a minute, and the limit that binds, were `task_type` allocated
    `max_tokens` (the last hour's calls otherwise as they were)."""
    observed, _ = _observed(now or timezone.now(), model)
    tasks = observed.get(model, {})
    limits = read_limits([model])[model]
    if limits is None or task_type not in tasks:
        return Capacity(math.inf, "")
    return _replay(tasks, limits, {task_type: max_tokens})


def _task_advice(task_type, tasks: dict, limits: Limits, readings: int) -> TaskAdvice:
    seen = tasks[task_type]
    max_tokens = _allocated_max_tokens(task_type)
    outputs = sorted(seen.outputs)
    p99 = outputs[math.ceil(0.99 * len(outputs)) - 1]
    suggested = math.ceil(p99 * HEADROOM / ROUND_TO) * ROUND_TO
    if suggested >= max_tokens:
        suggested = None
    calls = sum(len(t.outputs) for t in tasks.values())
    per_reading = calls / readings if readings else None
    now_allowed = _replay(tasks, limits, {}).calls_per_minute
    tighter = _replay(tasks, limits, {task_type: suggested}).calls_per_minute if suggested else None
    return TaskAdvice(
        task_type=task_type,
        calls=len(outputs),
        max_tokens=max_tokens,
        p99_output_tokens=p99,
        longest_output_tokens=outputs[-1],
        calls_per_min=now_allowed,
        readings_per_min=_per(now_allowed, per_reading),
        suggested_max_tokens=suggested,
        calls_per_min_suggested=tighter,
        readings_per_min_suggested=_per(tighter, per_reading),
    )


def _replay(tasks: dict[str, _Observed], limits: Limits, max_tokens: dict) -> Capacity:
    """The model's mix of calls, each task type in proportion to its calls, replayed."""
    fewest = min(len(seen.outputs) for seen in tasks.values())
    mix = []
    for task_type, seen in sorted(tasks.items()):
        profile = seen.profile(max_tokens.get(task_type) or _allocated_max_tokens(task_type))
        mix += [profile] * min(20, round(len(seen.outputs) / fewest))
    return calls_per_minute(limits, mix, burst_s=get_params().provider_burst_s)


def _observed(now: datetime, model: str | None):
    """The window's answered calls by model and task type, and each model's readings."""
    calls = LLMCall.objects.filter(
        created_at__gte=now - WINDOW,
        created_at__lte=now,
        outcome=CallOutcome.OK,
        batched=False,  # batches run outside the per-minute limits
    )
    if model is not None:
        calls = calls.filter(model=model)
    rows = calls.order_by("-created_at").values_list(
        "model",
        "task_type",
        F("input_tokens") + F("cache_write_tokens"),
        "output_tokens",
        "latency_s",
        "reading_id",
    )[:MAX_CALLS]
    observed: dict[str, dict[str, _Observed]] = {}
    readings: dict[str, set] = {}
    for name, task_type, input_tokens, output_tokens, latency_s, reading_id in rows:
        seen = observed.setdefault(name, {}).setdefault(task_type, _Observed([], [], []))
        seen.inputs.append(input_tokens)
        seen.outputs.append(output_tokens)
        seen.latencies.append(latency_s)
        if reading_id is not None:
            readings.setdefault(name, set()).add(reading_id)
    return observed, {name: len(ids) for name, ids in readings.items()}


def _allocated_max_tokens(task_type: str) -> int:
    return get_allocator().get_config(task_type).max_tokens


def _per(calls_per_min: float | None, calls_per_reading: float | None) -> float | None:
    if calls_per_min is None or not calls_per_reading or math.isinf(calls_per_min):
        return None
    return round(calls_per_min / calls_per_reading, 2)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
