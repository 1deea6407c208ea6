"""bench --cost-modes: the same readings (same spread, question and drawn cards) three ways,
and what each costs per reading.

1. uncached: prompt caching off (LLM_PROMPT_CACHING=0), standard calls;
2. cached: prompt caching on, standard calls;
3. economy: mode=economy, through the emulator's Message Batches API, with the economy
   Schedule's tick run in a loop (every TICK_S instead of every minute) and a short batch
   delay (--batch-delay-s; Anthropic takes minutes to hours), so the run ends in seconds.

Each run starts with an empty provider cache (the emulator is reset), so the cached run pays
its own cache writes. Costs come from the call log, priced as everywhere (allocation/pricing).
"""

import time
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings

from allocation.client_pool import runtime
from benchmarks import bench
from readings import economy
from readings.models import Reading, ReadingMode
from readings.services import draw_cards, reading_create
from spreads.models import Spread

TICK_S = 0.2


def run_cost_modes(
    config: bench.BenchConfig, progress: Callable[[int, int], None], *, emulator
) -> dict:
    spread = Spread.objects.get(slug=config.spread)
    draws = [draw_cards(spread.card_count) for _ in range(config.readings)]
    caching = settings.LLM_PROMPT_CACHING
    runs = {}
    try:
        for name, cached in (("uncached", False), ("cached", True)):
            settings.LLM_PROMPT_CACHING = cached
            runs[name] = _standard(config, draws, progress, emulator)
        settings.LLM_PROMPT_CACHING = True
        runs["economy"] = _economy(config, draws, progress, emulator)
    finally:
        settings.LLM_PROMPT_CACHING = caching
    figures = {name: _figures(result, stats) for name, (result, stats) in runs.items()}
    for result, _ in runs.values():
        bench.discard(result)
    uncached = figures["uncached"]["cost"]
    out = {
        "cost_uncached": _usd(uncached),
        "cost_cached": _usd(figures["cached"]["cost"]),
        "cost_economy": _usd(figures["economy"]["cost"]),
        "cached_vs_uncached": _ratio(figures["cached"]["cost"], uncached),
        "economy_vs_uncached": _ratio(figures["economy"]["cost"], uncached),
        "p50_uncached_s": figures["uncached"]["p50"],
        "p50_cached_s": figures["cached"]["p50"],
        "p50_economy_s": figures["economy"]["p50"],
        "readings_failed": sum(f["failed"] for f in figures.values()),
        "readings_per_mode": config.readings,
        "concurrency": config.concurrency,
        "batch_delay_s": emulator.knobs.batch_delay_s,
        "economy_note": "economy ran against the emulator's batches with a "
        f"{emulator.knobs.batch_delay_s:g} s processing delay and ticks every {TICK_S:g} s "
        "(production: a tick a minute, batches in minutes to hours); its p50 is not a "
        "production latency",
    }
    for name, f in figures.items():
        out[f"{name}_detail"] = f["detail"]
    return out


def _create(config, draws, mode=ReadingMode.STANDARD) -> list:
    return [
        reading_create(spread=config.spread, question=config.question, cards=cards, mode=mode).pk
        for cards in draws
    ]


def _standard(config, draws, progress, emulator):
    ids = _create(config, draws)
    bench.reset_limiter_state()
    emulator.reset()  # an empty prompt cache: each run pays its own writes
    started = time.monotonic()
    runtime.run(bench.run_ids(ids, concurrency=config.concurrency, progress=progress))
    result = bench.BenchResult(wall_s=time.monotonic() - started, reading_ids=ids)
    return result, emulator.stats()


def _economy(config, draws, progress, emulator):
    ids = _create(config, draws, mode=ReadingMode.ECONOMY)
    emulator.reset()
    started = time.monotonic()
    for pk in ids:
        economy.start(pk)
    while True:
        economy.tick()
        done = Reading.objects.filter(pk__in=ids, finished_at__isnull=False).count()
        progress(done, len(ids))
        if done == len(ids):
            break
        time.sleep(TICK_S)
    result = bench.BenchResult(wall_s=time.monotonic() - started, reading_ids=ids)
    return result, emulator.stats()


def _figures(result: bench.BenchResult, stats: dict) -> dict:
    summary = bench.summarize(result, stats)
    return {
        "cost": bench.cost_per_reading(result),
        "p50": summary["p50_reading_s"],
        "failed": summary["readings_failed"],
        "detail": {
            "calls": summary["calls"],
            "cost_usd": summary["cost_usd"],
            "wall_s": summary["wall_s"],
            "input_tokens": stats["input_tokens"],
            "cache_read_input_tokens": stats["cache_read_input_tokens"],
            "cache_creation_input_tokens": stats["cache_creation_input_tokens"],
            "output_tokens": stats["output_tokens"],
            "batches": stats["batches"],
        },
    }


def _usd(cost: Decimal | None) -> float | None:
    """A JSON number, rounded to a millionth of a dollar (the exact sums are in the ledger)."""
    return None if cost is None else float(round(cost, 6))


def _ratio(cost: Decimal | None, base: Decimal | None) -> float | None:
    return round(float(cost / base), 3) if cost is not None and base else None
