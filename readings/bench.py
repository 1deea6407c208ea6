"""Benchmarks: run readings against an emulator with given knobs and summarise what happened.

Speed targets are measured here (`make bench`, `manage.py bench`), never in timed test
assertions. Figures come from two independent witnesses: the readings' own metrics in the
database, and the emulator's counters (peak concurrency and connections as the server saw them).
"""

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q, Sum

from allocation.client_pool import runtime
from allocation.models import CallOutcome, LLMCall
from readings.engine import run_reading
from readings.models import Reading, ReadingStatus
from readings.services import reading_create


@dataclass(frozen=True)
class BenchConfig:
    spread: str = "celtic_cross"
    readings: int = 10
    concurrency: int = 2
    question: str = "What do I need to understand about the year ahead?"


@dataclass
class BenchResult:
    wall_s: float
    reading_ids: list = field(default_factory=list)
    # creation to done as an API client sees it (via-worker runs only)
    e2e_s: list[float] = field(default_factory=list)
    queue_delay_s: list[float] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run_in_process(config: BenchConfig, progress: Callable[[int, int], None]) -> BenchResult:
    """Readings run on this process's engine, `concurrency` of them in flight at once."""
    ids = [
        reading_create(spread=config.spread, question=config.question).pk
        for _ in range(config.readings)
    ]

    async def run_all():
        gate = asyncio.Semaphore(config.concurrency)
        done = 0

        async def one(reading_id):
            nonlocal done
            async with gate:
                await run_reading(reading_id)
            done += 1
            progress(done, len(ids))

        await asyncio.gather(*(one(i) for i in ids))

    started = time.monotonic()
    runtime.run(run_all())
    return BenchResult(wall_s=time.monotonic() - started, reading_ids=ids)


def summarize(result: BenchResult, emulator_stats: dict) -> dict:
    readings = list(Reading.objects.filter(pk__in=result.reading_ids))
    ok = [r for r in readings if r.status == ReadingStatus.DONE]
    calls = LLMCall.objects.filter(reading_id__in=result.reading_ids).aggregate(
        calls=Count("id"),
        rate_limited=Count("id", filter=Q(outcome=CallOutcome.RATE_LIMITED)),
        retries=Count("id", filter=Q(is_retry=True)),
        fallbacks=Count("task", filter=Q(is_fallback=True), distinct=True),
        cost=Sum("cost_usd"),
        ok_calls=Count("id", filter=Q(outcome=CallOutcome.OK)),
    )
    walls = [r.wall_time_s for r in ok]
    mean_wall = statistics.fmean(walls) if walls else 0.0
    mean_critical = statistics.fmean(r.critical_path_s for r in ok) if ok else 0.0
    mean_sequential = statistics.fmean(r.sequential_s for r in ok) if ok else 0.0
    summary = {
        "readings_ok": len(ok),
        "readings_failed": len(readings) - len(ok),
        "calls": calls["calls"],
        "rate_limited": calls["rate_limited"],
        "retries": calls["retries"],
        "fallbacks": calls["fallbacks"],
        "wall_s": round(result.wall_s, 3),
        "p50_reading_s": round(statistics.median(walls), 3) if walls else 0.0,
        "p95_reading_s": round(percentile(walls, 0.95), 3),
        "mean_critical_path_s": round(mean_critical, 3),
        "mean_sequential_s": round(mean_sequential, 3),
        "overhead_ratio": round(mean_wall / mean_critical, 3) if mean_critical else None,
        "speedup": round(mean_sequential / mean_wall, 3) if mean_wall else None,
        "peak_concurrency": emulator_stats["peak_concurrency"],
        "connections_opened": emulator_stats["connections_opened"],
        "cost_usd": str((calls["cost"] or Decimal(0)).quantize(Decimal("0.000001"))),
    }
    if result.e2e_s:
        summary["e2e_p50_s"] = round(statistics.median(result.e2e_s), 3)
        summary["e2e_p95_s"] = round(percentile(result.e2e_s, 0.95), 3)
        summary["queue_delay_p50_s"] = round(statistics.median(result.queue_delay_s), 3)
    return summary


def discard(result: BenchResult) -> None:
    """Bench readings are not business: remove them and their calls from the cost reports."""
    LLMCall.objects.filter(reading_id__in=result.reading_ids).delete()
    Reading.objects.filter(pk__in=result.reading_ids).delete()
