"""The seed design as written, for the bench to compare against: per reading, a fixed
semaphore of 5, no limit shared between readings or processes, the SDK's default retries
(max_retries=2, honouring retry-after) and no fallback model. It renders the same prompts
for the same spreads, so only the way calls are managed differs."""

import asyncio
import time
from dataclasses import dataclass, field

import anthropic
from asgiref.sync import sync_to_async

from readings import store
from readings.card_texts import split_by_card
from spreads.planning import plan_tasks
from spreads.prompts import CardResult, PromptContext

SEED_SEMAPHORE = 5


@dataclass
class BaselineRun:
    reading_seconds: list[float] = field(default_factory=list)
    failed: int = 0
    call_windows: list[tuple[str, float, float]] = field(default_factory=list)


async def run_seed_baseline(reading_ids, *, concurrency: int, base_url: str) -> BaselineRun:
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="seed-baseline")
    run = BaselineRun()
    gate = asyncio.Semaphore(concurrency)

    async def one(reading_id):
        async with gate:
            started = time.monotonic()
            try:
                await _reading(client, reading_id, run)
            except anthropic.APIError:
                run.failed += 1
            else:
                run.reading_seconds.append(time.monotonic() - started)

    try:
        await asyncio.gather(*(one(i) for i in reading_ids))
    finally:
        await client.close()
    return run


async def _reading(client, reading_id, run: BaselineRun):
    state = await sync_to_async(store.begin)(reading_id)
    semaphore = asyncio.Semaphore(SEED_SEMAPHORE)

    async def call(task_type: str, context: PromptContext) -> str:
        prompt = await sync_to_async(store.render)(state, task_type, context, cached=False)
        config = state.configs[task_type]
        async with semaphore:
            started = time.time()
            message = await client.messages.create(
                model=config.model, max_tokens=config.max_tokens, **prompt.request()
            )
            run.call_windows.append((config.model, started, time.time()))
        return "".join(b.text for b in message.content if b.type == "text")

    def context(**extra) -> PromptContext:
        return PromptContext(
            question=state.reading.question, spread=state.spread, cards=state.cards, **extra
        )

    planned = plan_tasks(state.spread.card_count, state.spread.batch_size)
    batches = [p for p in planned if p.phase == 1]
    by_index = {c.position.index: c for c in state.cards}
    texts = await asyncio.gather(
        *(
            call(p.task_type, context(batch=[by_index[i] for i in p.position_indexes]))
            for p in batches
        )
    )
    results = [
        CardResult(position=c.position, card=c.card, orientation=c.orientation, text=text)
        for p, batch_text in zip(batches, texts, strict=True)
        for c, text in zip(
            [by_index[i] for i in p.position_indexes],
            split_by_card(batch_text, [by_index[i].position.name for i in p.position_indexes]),
            strict=True,
        )
    ]
    overall, relationships = await asyncio.gather(
        call("overall_reading", context(card_results=results)),
        call("relationships", context(card_results=results)),
    )
    await call(
        "advice", context(card_results=results, overall=overall, relationships=relationships)
    )
