"""Calls about to write the same cold guide on one model: the first writes, the rest read."""

import asyncio

from allocation.prompt import Prompt, PromptPart
from allocation.warm_prefixes import WarmPrefixes
from readings.guide_writers import GuideWriters

MODEL = "claude-sonnet-5"  # caches prompts of 1,024 tokens and more
GUIDE = PromptPart("guide", "g" * 8000, "1h")  # 2,000 tokens


def prompt(guide=GUIDE, own="Interpret the Tower."):
    return Prompt(system=(guide,), user=(PromptPart("card", own),))


def run_calls(writers, warm, prompts, *, caches=True) -> list[str]:
    """Each call takes its turn, 'answers' after 50 ms and, if `caches`, leaves the guide
    warm; returns the order in which the calls started and ended."""
    log = []

    async def call(name, p):
        async with writers.turn(MODEL, p):
            log.append(f"start {name}")
            await asyncio.sleep(0.05)
            if caches:
                warm.saw(MODEL, p, cached_tokens=2000)
            log.append(f"end {name}")

    async def main():
        await asyncio.gather(*(call(i, p) for i, p in enumerate(prompts)))

    asyncio.run(main())
    return log


def test_the_first_call_writes_a_cold_guide_and_the_others_wait_to_read_it():
    warm = WarmPrefixes()
    log = run_calls(GuideWriters(warm), warm, [prompt(own=f"task {i}") for i in range(3)])

    assert log[:2] == ["start 0", "end 0"]
    assert sorted(log[2:]) == ["end 1", "end 2", "start 1", "start 2"]


def test_a_warm_guide_keeps_no_one_waiting():
    warm = WarmPrefixes()
    warm.saw(MODEL, prompt(), cached_tokens=2000)
    log = run_calls(GuideWriters(warm), warm, [prompt(own=f"task {i}") for i in range(2)])

    assert log[:2] == ["start 0", "start 1"]


def test_a_guide_too_short_to_cache_keeps_no_one_waiting():
    warm = WarmPrefixes()
    short = PromptPart("guide", "g" * 400, "1h")  # 100 tokens: below the model's minimum
    log = run_calls(GuideWriters(warm), warm, [prompt(short, own=f"t{i}") for i in range(2)])

    assert log[:2] == ["start 0", "start 1"]


def test_after_a_write_that_cached_nothing_the_next_calls_do_not_wait():
    warm = WarmPrefixes()
    writers = GuideWriters(warm)
    run_calls(writers, warm, [prompt(own="first")], caches=False)

    log = run_calls(writers, warm, [prompt(own=f"task {i}") for i in range(2)], caches=False)

    assert log[:2] == ["start 0", "start 1"]


def test_calls_with_different_guides_do_not_wait_for_each_other():
    warm = WarmPrefixes()
    other = PromptPart("guide", "h" * 8000, "1h")
    log = run_calls(GuideWriters(warm), warm, [prompt(), prompt(other)])

    assert log[:2] == ["start 0", "start 1"]
