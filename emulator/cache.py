"""Prompt caching accounting, per model, as Anthropic reports it in `usage`.

The text up to and including a block with cache_control is a cache prefix. The longest prefix
found in the cache is read (cache_read_input_tokens); the tokens from there to the last prefix
are written (cache_creation_input_tokens); input_tokens is whatever is left after both.

As on Anthropic, an entry becomes readable only once the response that writes it has started,
so parallel calls fired at the same moment all pay for the write; a caller that warms the cache
with one call first saves on the rest. Each read pushes the entry's expiry out again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .prompt import CachePrefix, Prompt


@dataclass(frozen=True)
class CacheUse:
    read: int
    creation: int
    prefixes: tuple[CachePrefix, ...]  # the ones to store if the request is admitted


@dataclass
class _Entry:
    ready_at: float
    expires_at: float


class PromptCache:
    def __init__(self):
        self._entries: dict[tuple[str, bytes], _Entry] = {}
        self._prune_above = 4096

    def clear(self) -> None:
        self._entries.clear()

    def look_up(self, prompt: Prompt, now: float, min_tokens: int) -> CacheUse:
        """What the prompt would read and write; changes nothing (a refused request writes no
        cache)."""
        prefixes = tuple(p for p in prompt.cache_prefixes if p.tokens >= min_tokens and p.tokens)
        read = 0
        for prefix in reversed(prefixes):
            entry = self._entries.get((prompt.model, prefix.key))
            if entry is not None and entry.ready_at <= now < entry.expires_at:
                read = prefix.tokens
                break
        written = prefixes[-1].tokens - read if prefixes else 0
        return CacheUse(read=read, creation=max(0, written), prefixes=prefixes)

    def store(
        self, model: str, use: CacheUse, now: float, ready_at: float, default_ttl_s: float
    ) -> None:
        """Record an admitted request's prefixes; its response starts at `ready_at`."""
        for prefix in use.prefixes:
            ttl_s = prefix.ttl_s if prefix.ttl_s is not None else default_ttl_s
            key = (model, prefix.key)
            entry = self._entries.get(key)
            if entry is not None and entry.ready_at <= now < entry.expires_at:
                entry.expires_at = max(entry.expires_at, now + ttl_s)
            elif entry is not None and now < entry.expires_at:
                # Being written by a response that has not started yet: keep the earlier start.
                entry.expires_at = max(entry.expires_at, ready_at + ttl_s)
            else:
                self._entries[key] = _Entry(ready_at=ready_at, expires_at=ready_at + ttl_s)
        if len(self._entries) > self._prune_above:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}
            self._prune_above = max(4096, 2 * len(self._entries))
