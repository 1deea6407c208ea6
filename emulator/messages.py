"""The bytes Anthropic sends back: message bodies, error bodies and server-sent events."""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from .text import Answer

_ALPHABET = string.ascii_letters + string.digits


def anthropic_id(prefix: str) -> str:
    # Shaped like Anthropic's ids, e.g. msg_01XFDUDYJgAACzvnptvVoYEL.
    return prefix + "01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def message_id() -> str:
    return anthropic_id("msg_")


def request_id() -> str:
    return anthropic_id("req_")


def usage(
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_creation_5m: int,
    cache_creation_1h: int,
    service_tier: str = "standard",
) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_5m + cache_creation_1h,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_creation_5m,
            "ephemeral_1h_input_tokens": cache_creation_1h,
        },
        "service_tier": service_tier,
    }


def message(msg_id: str, model: str, answer: Answer, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "content": [_block(answer, complete=True)],
        "model": model,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _block(answer: Answer, *, complete: bool) -> dict[str, Any]:
    """The answer's content block: text, or a call of the tool the request forced (its
    input empty at a stream's start, filled by input_json_delta events)."""
    if not answer.tool_name:
        return {"type": "text", "text": answer.text if complete else ""}
    tool_input: Any = {}
    if complete:
        try:
            tool_input = answer.tool_input
        except ValueError:
            tool_input = {}  # cut off by max_tokens: what arrived does not parse
    return {
        "type": "tool_use",
        "id": anthropic_id("toolu_"),
        "name": answer.tool_name,
        "input": tool_input,
    }


def error(error_type: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": text}}


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def stream_head(
    msg_id: str, model: str, usage: dict[str, int], answer: Answer | None = None
) -> bytes:
    """message_start, content_block_start and ping, sent together before the first token."""
    start = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        # Anthropic reports the input side here and a placeholder for output.
        "usage": {**usage, "output_tokens": 1},
    }
    return (
        sse("message_start", {"type": "message_start", "message": start})
        + sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": _block(answer, complete=False)
                if answer is not None
                else {"type": "text", "text": ""},
            },
        )
        + sse("ping", {"type": "ping"})
    )


def stream_delta(text: str, *, tool: bool = False) -> bytes:
    delta = (
        {"type": "input_json_delta", "partial_json": text}
        if tool
        else {"type": "text_delta", "text": text}
    )
    return sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})


def stream_tail(answer: Answer, usage: dict[str, int]) -> bytes:
    """content_block_stop, message_delta (stop reason, cumulative usage) and message_stop."""
    return (
        sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        + sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
        + sse("message_stop", {"type": "message_stop"})
    )
