"""Which cached prompt prefixes are warm, so a call's input-token charge leaves them out.

Anthropic does not count cache reads against the input-tokens-per-minute limit, and the
limiter settles each call on its real usage (plain input plus cache writes, reads excluded).
The charge taken at admission is an estimate made before the call; charging a prefix the
provider will read from its cache would hold back throughput the provider grants, until the
call settles. So each process remembers the prefixes it has seen cached (up to each cache
breakpoint, per model, until their TTL runs out) and admission charges only the rest.
"""

import time
from collections.abc import Callable

TTL_S = {"5m": 300.0, "1h": 3600.0}


class WarmPrefixes:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self._clock = clock
        self._max_entries = max_entries
        self._until: dict[tuple[str, bytes], float] = {}

    def cached_tokens(self, model: str, prompt) -> int:
        """Tokens of the longest prefix of `prompt` known to be in `model`'s cache."""
        now = self._clock()
        best = 0
        for prefix in prompt.cache_prefixes():
            if self._until.get((model, prefix.key), 0) > now:
                best = prefix.tokens
        return best

    def saw(self, model: str, prompt, cached_tokens: int) -> None:
        """After a call whose usage read or wrote `cached_tokens` in all: its prefixes up to
        that length are warm, and stay so for their TTL (a read refreshes it)."""
        if cached_tokens <= 0:
            return
        now = self._clock()
        if len(self._until) >= self._max_entries:
            self._until = {k: t for k, t in self._until.items() if t > now}
        for prefix in prompt.cache_prefixes():
            # The estimate rounds differently from the provider's tokenizer: allow 10%.
            if prefix.tokens <= cached_tokens * 1.1:
                self._until[(model, prefix.key)] = now + TTL_S[prefix.ttl]


warm_prefixes = WarmPrefixes()
