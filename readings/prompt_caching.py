"""Which shared parts of a reading's prompts carry a cache breakpoint, and for how long.

Caches are per model, a cache write costs more than plain input (1.25x for 5 minutes, 2x for
an hour) and an entry is readable only once the response that wrote it has begun. So a part
is marked only where a read can follow:
- the spread's guide, always (at the spread's guide TTL): every reading of the spread sends
  the same guide, so the next reading on the same model reads it;
- the layout and the card results, only for a task whose model also runs a task of another
  phase of the same reading: the earlier phase writes, the later one reads (relationships
  then advice). Calls of one phase start together, so none of them could read another's
  write: marking them would pay the write premium for nothing.
A model choice that puts a reading's later tasks on different models breaks that sharing;
readings.cache_sharing says where, for staff in the spread admin.
"""

from dataclasses import dataclass

from spreads.models import CacheTTL
from spreads.prompts import GUIDE, LAYOUT, RESULTS

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
    readers = [
        other
        for other in reading_calls
        if other.model == call.model and other.phase != call.phase and other.task_type
    ]
    if reading_ttl != CacheTTL.OFF and readers:
        ttls[LAYOUT] = reading_ttl
        if call.phase > 1 and any(other.phase > 1 for other in readers):
            ttls[RESULTS] = reading_ttl
    if guide_ttl != CacheTTL.OFF:
        # Anthropic wants longer-lived breakpoints before shorter ones: a 5-minute guide
        # ahead of 1-hour reading parts is lifted to an hour.
        lifted = CacheTTL.ONE_HOUR in ttls.values()
        ttls[GUIDE] = CacheTTL.ONE_HOUR if lifted else guide_ttl
    return ttls
