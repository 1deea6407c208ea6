"""Prompt caching accounting, per model, as Anthropic reports it in `usage`.

The text up to and including a block with cache_control is a cache prefix. The longest prefix
found in the cache is read (cache_read_input_tokens); the tokens from there to the last prefix
are written (cache_creation_input_tokens), each stretch at the TTL of the breakpoint that ends
it (usage.cache_creation.ephemeral_5m/1h_input_tokens); input_tokens is whatever is left.

A prefix shorter than the model's minimum cacheable length is silently not cached, as on
Anthropic. An entry becomes readable only once the response that writes it has started, so
parallel calls fired at the same moment all pay for the write; a caller that lets one call go
first saves on the rest. Each read pushes the entry's expiry out by its TTL again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .prompt import CachePrefix, Prompt

# Anthropic's documented minimum cacheable prompt length, by model family (longest id prefix
# wins). The 5.x ids (claude-haiku-5-5, claude-sonnet-5, claude-sonnet-5-5, claude-opus-5...)
# are not documented yet: they take their family's newest documented figure, Haiku 4.5's and
# Opus 4.5's 4,096 and Sonnet 4.5's 1,024. Unknown models get 1,024.
MIN_CACHEABLE_TOKENS = {
    "claude-3-haiku": 2048,
    "claude-3-5-haiku": 2048,
    "claude-3-7-sonnet": 1024,
    "claude-sonnet-4": 1024,
    "claude-opus-4-0": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 4096,  # 4.5 and later
    "claude-haiku": 4096,  # 4.5 and later
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
class CacheUse:
    read: int
    creation_5m: int
    creation_1h: int
    prefixes: tuple[CachePrefix, ...]  # the ones to store if the request is admitted

    @property
    def creation(self) -> int:
        return self.creation_5m + self.creation_1h


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

    def look_up(self, prompt: Prompt, now: float, min_tokens: int | None) -> CacheUse:
        """What the prompt would read and write; changes nothing (a refused request writes no
        cache). min_tokens None: the model's own minimum."""
        if min_tokens is None:
            min_tokens = min_cacheable_tokens(prompt.model)
        prefixes = tuple(p for p in prompt.cache_prefixes if p.tokens >= min_tokens and p.tokens)
        read = 0
        for prefix in reversed(prefixes):
            entry = self._entries.get((prompt.model, prefix.key))
            if entry is not None and entry.ready_at <= now < entry.expires_at:
                read = prefix.tokens
                break
        written = {"5m": 0, "1h": 0}
        covered = read
        for prefix in prefixes:
            if prefix.tokens > covered:
                written[prefix.ttl] += prefix.tokens - covered
                covered = prefix.tokens
        return CacheUse(
            read=read, creation_5m=written["5m"], creation_1h=written["1h"], prefixes=prefixes
        )

    def store(
        self, model: str, use: CacheUse, now: float, ready_at: float, ttl_s: dict[str, float]
    ) -> None:
        """Record an admitted request's prefixes; its response starts at `ready_at`. ttl_s
        maps "5m" and "1h" to seconds."""
        for prefix in use.prefixes:
            lifetime = ttl_s[prefix.ttl]
            key = (model, prefix.key)
            entry = self._entries.get(key)
            if entry is not None and entry.ready_at <= now < entry.expires_at:
                entry.expires_at = max(entry.expires_at, now + lifetime)  # a read refreshes
            elif entry is not None and now < entry.expires_at:
                # Being written by a response that has not started yet: keep the earlier start.
                entry.expires_at = max(entry.expires_at, ready_at + lifetime)
            else:
                self._entries[key] = _Entry(ready_at=ready_at, expires_at=ready_at + lifetime)
        if len(self._entries) > self._prune_above:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}
            self._prune_above = max(4096, 2 * len(self._entries))
