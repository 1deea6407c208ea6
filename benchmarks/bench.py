"""Benchmarks: run readings against an emulator with given knobs and summarise what happened.

Speed targets are measured here (`make bench`, `manage.py bench`), never in timed test
assertions. Figures come from two independent witnesses: the readings' own metrics in the
database, and the emulator's counters (peak concurrency and connections as the server saw them).
"""

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q, Sum

from allocation.client_pool import runtime
from allocation.models import CallOutcome, LLMCall
from readings.engine import run_reading
from readings.models import Reading, ReadingStatus
from readings.services import reading_create

# How often a bench API client asks whether its reading is done: often enough that polling
# adds little to the end-to-end figure, rarely enough not to load the server.
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class BenchConfig:
    spread: str = "celtic_cross"
    readings: int = 10
    concurrency: int = 2
    question: str = "What do I need to understand about the year ahead?"
    rpm: int | None = None


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


async def run_ids(reading_ids, *, concurrency: int, progress=None) -> None:
    """Run readings on this process's engine, `concurrency` of them in flight at once."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(reading_id):
        nonlocal done
        async with gate:
            await run_reading(reading_id)
        done += 1
        if progress:
            progress(done, len(reading_ids))

    await asyncio.gather(*(one(i) for i in reading_ids))


def create_readings(config: BenchConfig) -> list:
    return [
        reading_create(spread=config.spread, question=config.question).pk
        for _ in range(config.readings)
    ]


def run_in_process(config: BenchConfig, progress: Callable[[int, int], None]) -> BenchResult:
    ids = create_readings(config)
    started = time.monotonic()
    runtime.run(run_ids(ids, concurrency=config.concurrency, progress=progress))
    return BenchResult(wall_s=time.monotonic() - started, reading_ids=ids)


def run_in_processes(
    config: BenchConfig, progress: Callable[[int, int], None], *, workers: int, base_url: str
) -> BenchResult:
    """The same readings spread over `workers` processes (readings in flight split between
    them), so that only the shared limiter stands between them and the provider."""
    import subprocess
    import sys

    from django.conf import settings

    from benchmarks.workers import database_url

    ids = [str(pk) for pk in create_readings(config)]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "",
        "LOG_LEVEL": "WARNING",
    }
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_readings",
                *ids[i::workers],
                "--concurrency",
                str(max(1, config.concurrency // workers)),
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]
    while any(child.poll() is None for child in children):
        time.sleep(0.2)
        progress(Reading.objects.filter(pk__in=ids, finished_at__isnull=False).count(), len(ids))
    failed = [child.returncode for child in children if child.returncode]
    if failed:
        raise RuntimeError(f"a bench worker process exited with {failed}")
    return BenchResult(wall_s=time.monotonic() - started, reading_ids=ids)


# The emulator's buckets hold this many seconds of refill (its --burst-s default).
PROVIDER_BURST_S = 1.0


def utilization(
    windows_by_model: dict[str, list[tuple[float, float]]], ok_by_model: dict, rpm: int | None
) -> float | None:
    """Successful calls as a share of what the provider's request bucket would have admitted
    over the busy period (from the first request sent to the last): its capacity plus its
    refill. A stream paced exactly at the limit scores 1.0. Rate limits are per model, so
    this is measured on the model that carried the most calls, whose limit binds."""
    if not rpm or not windows_by_model:
        return None
    model = max(windows_by_model, key=lambda m: ok_by_model.get(m, 0))
    sent = [start for start, _ in windows_by_model[model]]
    busy_s = max(sent) - min(sent)
    admissible = max(1.0, rpm / 60 * PROVIDER_BURST_S) + rpm / 60 * busy_s
    return round(ok_by_model.get(model, 0) / admissible, 3)


def call_windows(reading_ids) -> dict[str, list[tuple[float, float]]]:
    windows: dict[str, list[tuple[float, float]]] = {}
    for model, started_at, latency in LLMCall.objects.filter(
        reading_id__in=reading_ids
    ).values_list("model", "started_at", "latency_s"):
        start = started_at.timestamp()
        windows.setdefault(model, []).append((start, start + latency))
    return windows


def ok_by_model(emulator_stats: dict) -> dict[str, int]:
    return {model: counts.get("ok", 0) for model, counts in emulator_stats["by_model"].items()}


def summarize(result: BenchResult, emulator_stats: dict, *, rpm: int | None = None) -> dict:
    readings = list(Reading.objects.filter(pk__in=result.reading_ids))
    ok = [r for r in readings if r.status == ReadingStatus.DONE]
    calls = LLMCall.objects.filter(reading_id__in=result.reading_ids).aggregate(
        calls=Count("id"),
        rate_limited=Count("id", filter=Q(outcome=CallOutcome.RATE_LIMITED)),
        retries=Count("id", filter=Q(is_retry=True)),
        fallbacks=Count("id", filter=Q(is_fallback=True)),  # calls, as everywhere
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
        "utilization": utilization(
            call_windows(result.reading_ids), ok_by_model(emulator_stats), rpm
        ),
    }
    if result.e2e_s:
        summary["e2e_p50_s"] = round(statistics.median(result.e2e_s), 3)
        summary["e2e_p95_s"] = round(percentile(result.e2e_s, 0.95), 3)
        summary["queue_delay_p50_s"] = round(statistics.median(result.queue_delay_s), 3)
    return summary


def run_baseline(
    config: BenchConfig, progress: Callable[[int, int], None], *, base_url: str, emulator
) -> dict:
    """The seed's design on the same workload, summarised with the same keys where they mean
    the same thing (its calls are not logged, so the emulator counts them)."""
    from benchmarks.seed_baseline import run_seed_baseline

    ids = create_readings(config)
    emulator.reset()
    started = time.monotonic()
    run = runtime.run(run_seed_baseline(ids, concurrency=config.concurrency, base_url=base_url))
    wall = time.monotonic() - started
    progress(config.readings, config.readings)
    stats = emulator.stats()
    windows: dict[str, list[tuple[float, float]]] = {}
    for model, start, end in run.call_windows:
        windows.setdefault(model, []).append((start, end))
    discard(BenchResult(wall_s=wall, reading_ids=ids))
    return {
        "readings_ok": len(run.reading_seconds),
        "readings_failed": run.failed,
        "calls": stats["requests"],
        "rate_limited": stats["rate_limited"],
        "wall_s": round(wall, 3),
        "p50_reading_s": round(statistics.median(run.reading_seconds), 3)
        if run.reading_seconds
        else 0.0,
        "p95_reading_s": round(percentile(run.reading_seconds, 0.95), 3),
        "peak_concurrency": stats["peak_concurrency"],
        "connections_opened": stats["connections_opened"],
        "utilization": utilization(windows, ok_by_model(stats), config.rpm),
    }


@contextmanager
def provider_limits(*, rpm: int | None, itpm: int | None, otpm: int | None):
    """Tell the platform the emulator's limits, as staff enter their tier's in the admin, and
    start from fresh limiter state; the admin's rows are restored afterwards."""
    from allocation.limiter import get_backend
    from allocation.limiter.backends import forget_limits
    from allocation.models import ModelLimit

    saved = list(ModelLimit.objects.all())
    get_backend().reset()
    changes = {
        field: value
        for field, value in [
            ("requests_per_minute", rpm),
            ("input_tokens_per_minute", itpm),
            ("output_tokens_per_minute", otpm),
        ]
        if value
    }
    if changes:
        ModelLimit.objects.update(**changes)
    forget_limits()
    try:
        yield
    finally:
        for row in saved:
            row.save()


def cost_per_reading(result: BenchResult) -> Decimal | None:
    """Mean cost of the readings that finished, from the ledger (retries and fallbacks in)."""
    done = Reading.objects.filter(pk__in=result.reading_ids, status=ReadingStatus.DONE)
    totals = done.aggregate(n=Count("id"), cost=Sum("cost_usd"))
    if not totals["n"]:
        return None
    return (totals["cost"] or Decimal(0)) / totals["n"]


def reset_limiter_state() -> None:
    """Breakers, controllers and buckets start fresh, so one run's failures do not steer the
    next (the clean comparison run of --fail-rate)."""
    from allocation.models import Lease, ModelState

    ModelState.objects.all().delete()
    Lease.objects.all().delete()


def discard(result: BenchResult) -> None:
    """Bench readings are not business: remove them and their calls from the cost reports."""
    LLMCall.objects.filter(reading_id__in=result.reading_ids).delete()
    Reading.objects.filter(pk__in=result.reading_ids).delete()
