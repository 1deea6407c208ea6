"""Turns a Messages API request body into a Prompt, refusing what the real API refuses.

A Prompt is the request flattened into blocks in Anthropic's cache order (tools, system,
messages), each with an estimated token count, plus the prefixes that carry cache_control.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text
MAX_CACHE_BREAKPOINTS = 4  # Anthropic refuses a fifth cache_control block


class InvalidRequest(Exception):
    """The request is malformed: a 400 invalid_request_error carrying this message."""


@dataclass(frozen=True)
class CachePrefix:
    key: bytes  # identifies the text up to and including the block with cache_control
    tokens: int  # tokens in that text
    ttl: str  # "5m" (the default) or "1h", as the block's cache_control asked


@dataclass(frozen=True)
class Prompt:
    model: str
    max_tokens: int
    stream: bool
    input_tokens: int  # all of it, cached or not
    cache_prefixes: tuple[CachePrefix, ...]  # shortest first
    system_text: str
    conversation_text: str  # the messages' text, where the cards asked about are named
    digest: bytes  # seeds the answer's length and wording: same prompt, same answer
    # The tool tool_choice forces ({"type": "tool", "name": ...}): the answer calls it.
    tool: dict | None = None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def parse(body: Any) -> Prompt:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = _required(body, "model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Input should be a non-empty string")
    max_tokens = _required(body, "max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise InvalidRequest("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    messages = _required(body, "messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 1
    ):
        raise InvalidRequest("temperature: Input should be a number between 0 and 1")

    blocks = _Blocks()
    tools = _list_or_none(body.get("tools"), "tools")
    for tool in tools:
        blocks.add("tool", _strip_cache_control(tool), tool)
    forced = _forced_tool(body.get("tool_choice"), tools)
    system = body.get("system")
    system_parts = []
    if isinstance(system, str):
        if system:
            blocks.add("system", system, None)
            system_parts.append(system)
    elif system is not None:
        for i, block in enumerate(_list_or_none(system, "system")):
            text = _text_block(block, f"system.{i}")
            blocks.add("system", text, block)
            system_parts.append(text)
    conversation_parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}: each message needs a role of user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            blocks.add(message["role"], content, None)
            conversation_parts.append(content)
        elif isinstance(content, list):
            for j, block in enumerate(content):
                where = f"messages.{i}.content.{j}"
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise InvalidRequest(f"{where}: a content block needs a type")
                if block["type"] == "text":
                    text = _text_block(block, where)
                    conversation_parts.append(text)
                else:
                    # Images, tool results...: counted by their size, never read for cards.
                    text = _strip_cache_control(block)
                blocks.add(message["role"], text, block)
        else:
            raise InvalidRequest(f"messages.{i}.content: Input should be a string or a list")

    if len(blocks.prefixes) > MAX_CACHE_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(blocks.prefixes)}."
        )
    return Prompt(
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        input_tokens=max(1, blocks.tokens),
        cache_prefixes=tuple(blocks.prefixes),
        system_text="\n\n".join(system_parts),
        conversation_text="\n\n".join(conversation_parts),
        digest=blocks.hash.digest(),
        tool=forced,
    )


def _forced_tool(choice: Any, tools: list) -> dict | None:
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise InvalidRequest('tool_choice: type must be "auto", "any", "tool" or "none"')
    if choice["type"] != "tool":
        return None
    named = [t for t in tools if isinstance(t, dict) and t.get("name") == choice.get("name")]
    if not named:
        raise InvalidRequest(f"tool_choice: no tool named {choice.get('name')!r} in tools")
    if not isinstance(named[0].get("input_schema"), dict):
        raise InvalidRequest("tools: each tool needs an input_schema object")
    return named[0]


class _Blocks:
    """Accumulates blocks: a running hash and token count, snapshotted at cache_control."""

    def __init__(self):
        self.hash = hashlib.blake2b(digest_size=16)
        self.tokens = 0
        self.prefixes: list[CachePrefix] = []

    def add(self, kind: str, text: str, block: Any) -> None:
        # The kind and length go into the hash so that moving text between blocks or roles
        # makes a different prompt.
        self.hash.update(f"\x00{kind}\x00{len(text)}\x00".encode())
        self.hash.update(text.encode())
        self.tokens += estimate_tokens(text)
        cache_control = block.get("cache_control") if isinstance(block, dict) else None
        if cache_control is not None:
            if not isinstance(cache_control, dict) or cache_control.get("type") != "ephemeral":
                raise InvalidRequest('cache_control: type must be "ephemeral"')
            ttl = cache_control.get("ttl")
            if ttl not in (None, "5m", "1h"):
                raise InvalidRequest('cache_control.ttl: Input should be "5m" or "1h"')
            self.prefixes.append(
                CachePrefix(
                    key=self.hash.copy().digest(),
                    tokens=self.tokens,
                    ttl=ttl or "5m",
                )
            )


def _required(body: dict, name: str) -> Any:
    if name not in body or body[name] is None:
        raise InvalidRequest(f"{name}: Field required")
    return body[name]


def _list_or_none(value: Any, name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{name}: Input should be a valid list")
    return value


def _text_block(block: Any, where: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise InvalidRequest(f"{where}: Input should be a text block")
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.text: Field required")
    if not text:
        raise InvalidRequest(f"{where}: text content blocks must be non-empty")
    return text


def _strip_cache_control(block: Any) -> str:
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return json.dumps(block, sort_keys=True, separators=(",", ":"))
