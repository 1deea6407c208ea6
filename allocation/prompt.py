"""What the LLM layer is asked to send: a prompt as plain values, built by whoever calls it.

A prompt is parts of text, most shared first: the parts before a cache breakpoint are the
prefix the provider may cache (identical bytes across the calls that share it). The layer
knows nothing of what the parts mean; spreads.prompts builds them for a reading.
"""

import hashlib
import math
from dataclasses import dataclass

# A rough count (Anthropic's tokenizer averages about four characters a token), used before a
# call to reserve token budget and to size cache prefixes; real usage settles it afterwards.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class PromptPart:
    name: str  # what the part is, for the caller's bookkeeping (e.g. "guide")
    text: str
    cache_ttl: str = ""  # "5m" or "1h": a cache breakpoint ends this part; "": none


@dataclass(frozen=True)
class CachePrefix:
    """The prompt up to and including one part with a cache breakpoint."""

    key: bytes  # the same for the same bytes up to the breakpoint: the provider's cache key
    tokens: int  # estimated
    ttl: str


@dataclass(frozen=True)
class Prompt:
    """A call's prompt: the system parts, then the rest as one user message."""

    system: tuple[PromptPart, ...]
    user: tuple[PromptPart, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(part.text for part in (*self.system, *self.user))

    def cache_prefixes(self) -> list[CachePrefix]:
        """Each prefix the provider may cache, shortest first."""
        digest = hashlib.blake2b(digest_size=16)
        chars = 0
        found = []
        for part in (*self.system, *self.user):
            digest.update(f"\x00{part.name}\x00{len(part.text)}\x00".encode())
            digest.update(part.text.encode())
            chars += len(part.text)
            if part.cache_ttl:
                key = digest.copy().digest()
                found.append(CachePrefix(key, math.ceil(chars / CHARS_PER_TOKEN), part.cache_ttl))
        return found

    def request(self) -> dict:
        """The system and messages arguments of a Messages API call."""
        return {
            "system": [_block(part) for part in self.system],
            "messages": [{"role": "user", "content": [_block(part) for part in self.user]}],
        }


def _block(part: PromptPart) -> dict:
    block = {"type": "text", "text": part.text}
    if part.cache_ttl:
        block["cache_control"] = {"type": "ephemeral", "ttl": part.cache_ttl}
    return block
