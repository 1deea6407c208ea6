"""Which shared parts of a reading's prompts carry a cache breakpoint, and for how long.

Caches are per model, a cache write costs more than plain input (1.25x for 5 minutes, 2x for
an hour) and an entry is readable only once the response that wrote it has begun. So a part
is marked only where reads can follow and pay for the write:
- the spread's guide, always (at the spread's guide TTL): every reading of the spread sends
  the same guide, so the next reading on the same model reads it;
- the layout and the card results, only for a task whose model also runs a task of a later
  phase of the same reading, and only if those reads outweigh the write premium (one read
  for a 5-minute write, two for an hour's: _write_pays): the earlier phase writes, the later
  one reads (relationships then advice). Calls of one phase start together, so none of them
  could read another's write: marking them would pay the write premium for nothing.
A model choice that puts a reading's later tasks on different models breaks that sharing;
spreads.cache_sharing says where, for staff in the spread admin.

And since each model keeps its own copy of the guide, the guide sent on a model carries the
rules of the steps that model runs, not the others' (guide_steps).
"""

from collections.abc import Callable
from dataclasses import dataclass

from allocation.models import CacheTTL
from spreads.models import TaskType
from spreads.prompts import GUIDE, LAYOUT, RESULTS, STEPS

# Anthropic's minimum cacheable prompt length, by model family (the longest id prefix wins).
# The 5.x ids (claude-haiku-5-5, claude-sonnet-5, claude-sonnet-5-5...) are not documented
# yet: they take their family's newest documented figure, Haiku 4.5's and Opus 4.5's 4,096 and
# Sonnet 4.5's 1,024. The emulator applies the same table (emulator/cache.py).
MIN_CACHEABLE_TOKENS = {
    "claude-3-haiku": 2048,
    "claude-3-5-haiku": 2048,
    "claude-3-7-sonnet": 1024,
    "claude-sonnet-4": 1024,
    "claude-opus-4-0": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 4096,
    "claude-haiku": 4096,
    "claude-sonnet": 1024,
    "claude-opus": 4096,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024

# Of the input price: what a cache write costs on top, by TTL, and what a cache read saves.
WRITE_PREMIUM = {CacheTTL.FIVE_MINUTES: 0.25, CacheTTL.ONE_HOUR: 1.0}
READ_SAVING = 0.9


def min_cacheable_tokens(model: str) -> int:
    for prefix in sorted(MIN_CACHEABLE_TOKENS, key=len, reverse=True):
        if model.startswith(prefix):
            return MIN_CACHEABLE_TOKENS[prefix]
    return DEFAULT_MIN_CACHEABLE_TOKENS


@dataclass(frozen=True)
class PlannedCall:
    task_type: str
    phase: int
    model: str
    cache_ttl: str = ""  # the allocation's choice; "" : the spread's reading TTL


def cache_ttls(
    call: PlannedCall,
    reading_calls: list[PlannedCall],
    *,
    guide_ttl: str,
    reading_ttl: str,
    economy: bool = False,
    enabled: bool = True,
) -> dict[str, str]:
    """The breakpoint TTL of each shared part of `call`'s prompt (absent: no breakpoint)."""
    if not enabled:
        return {}
    ttls = {}
    reading_ttl = call.cache_ttl or reading_ttl
    if reading_ttl != CacheTTL.OFF and economy:
        reading_ttl = CacheTTL.ONE_HOUR  # the next phase's batch may be an hour away
    if reading_ttl != CacheTTL.OFF:
        same_model = [other for other in reading_calls if other.model == call.model]
        if _write_pays(reading_ttl, _reads(same_model, first_phase=1)):
            ttls[LAYOUT] = reading_ttl
        if call.phase > 1 and _write_pays(reading_ttl, _reads(same_model, first_phase=2)):
            ttls[RESULTS] = reading_ttl
    if guide_ttl != CacheTTL.OFF:
        # Anthropic wants longer-lived breakpoints before shorter ones: a 5-minute guide
        # ahead of 1-hour reading parts is lifted to an hour.
        lifted = CacheTTL.ONE_HOUR in ttls.values()
        ttls[GUIDE] = CacheTTL.ONE_HOUR if lifted else guide_ttl
    return ttls


def _reads(same_model: list[PlannedCall], *, first_phase: int) -> int:
    """How many calls on one model read a part that the earliest of its calls sending it
    (those in phase first_phase or later) writes: the calls of the phases after that one."""
    phases = [c.phase for c in same_model if c.phase >= first_phase]
    return sum(phase > min(phases) for phase in phases) if phases else 0


def _write_pays(ttl: str, reads: int) -> bool:
    """Whether a write at `ttl` costs less than it saves: a read saves 0.9 of the input price,
    a write costs 0.25 more for 5 minutes and 1.0 more for an hour. So one read pays for a
    5-minute write, and an hour's write needs two."""
    return reads * READ_SAVING > WRITE_PREMIUM[ttl]


def guide_steps(
    call: PlannedCall,
    reading_calls: list[PlannedCall],
    *,
    guide_tokens: Callable[[tuple[str, ...]], int],
) -> tuple[str, ...]:
    """The steps whose rules the guide sent with `call` carries.

    Caches are per model, so the calls on one model share one guide (across readings, and
    as the prefix of the layout and card results within one), and a step no call on that
    model runs is text every call pays for (as a cache read, or in full where the guide is
    too short to cache) and never uses. So the guide carries the steps of the calls on
    `call`'s model. Except that a guide long enough to cache whole is never cut below the
    model's minimum (guide_tokens estimates a guide's length): that would turn cheap cache
    reads into plain input. The choice does not depend on whether caching is on, so that
    switching it off changes the breakpoints only, never the prompts."""
    own = TaskType(call.task_type).kind
    kinds = {TaskType(c.task_type).kind for c in reading_calls if c.model == call.model} | {own}
    steps = tuple(step for step in STEPS if step in kinds)
    minimum = min_cacheable_tokens(call.model)
    if steps != STEPS and guide_tokens(steps) < minimum <= guide_tokens(STEPS):
        return STEPS
    return steps
