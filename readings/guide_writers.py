"""One call writes a cold guide; the calls that would write it alongside wait and read it.

Every reading of a spread sends the same guide, with a cache breakpoint, and an entry is
readable only once the response that wrote it has begun. When readings start together on a
cold cache (after a quiet hour, or the first readings of the day), each of their calls on the
same model would write the guide at once, paying the write premium (1.25x or 2x input) many
times over instead of one write and cheap reads (0.1x). So in each process, the first call
about to write a cold guide on a model goes alone; the others on that model wait for its
answer, then read what it wrote. The wait is one call's latency, once per model per TTL, and
only for a guide long enough to be cached at all.
"""

import asyncio
import time
from contextlib import asynccontextmanager

from allocation.warm_prefixes import warm_prefixes
from spreads.prompt_caching import min_cacheable_tokens

# A guide whose writer came back without it cached (the provider counted fewer tokens than
# its minimum, or the call went to a fallback model) is not waited for again for this long.
GIVE_UP_S = 300.0


class GuideWriters:
    def __init__(self, warm=warm_prefixes):
        self._warm = warm
        self._writing: dict[tuple[str, bytes], asyncio.Event] = {}
        self._uncacheable: dict[tuple[str, bytes], float] = {}

    @asynccontextmanager
    async def turn(self, model: str, prompt):
        """Held around a task's call on `model`: alone if it would write the cold guide,
        after that write if another call is making it, at once otherwise."""
        # The guide: the prompt up to its first breakpoint, keyed as the warm prefixes are.
        first = next(iter(prompt.cache_prefixes()), None)
        if first is None or first.tokens < min_cacheable_tokens(model):
            yield
            return
        key = (model, first.key)
        if self._warm.cached_tokens(model, prompt) or self._uncacheable.get(key, 0) > (
            time.monotonic()
        ):
            yield
            return
        writer = self._writing.get(key)
        if writer is not None:
            await writer.wait()  # then read it (or, if it was not cached, go anyway)
            yield
            return
        self._writing[key] = event = asyncio.Event()
        try:
            yield
        finally:
            del self._writing[key]
            event.set()
        # Answered, yet not cached: do not make the next calls wait for nothing. (A failed
        # call teaches nothing: the next one writes.)
        if not self._warm.cached_tokens(model, prompt):
            self._uncacheable[key] = time.monotonic() + GIVE_UP_S


guide_writers = GuideWriters()
