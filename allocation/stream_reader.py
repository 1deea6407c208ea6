"""A streamed answer read from the raw bytes of the SDK's response.

The SDK still makes the request (its headers, its errors for a refused request, its
connection pool), through `messages.with_streaming_response.create(stream=True)`, its
lower-level interface. Its event stream then decodes the body line by line and turns every
event into a pydantic model, and its MessageStream helper rebuilds a snapshot of the whole
message at each event; for a card batch streaming a few hundred deltas those were the
worker's largest costs after its database work (one in five CPU-seconds of a call's
streaming went to the SDK's decoding). Here the body is split into events and each event's
data is parsed as plain JSON (events()), and only what a call needs at the end is kept
(StreamedMessage): the text and tool blocks, the stop reason and the usage.

An `error` event mid-stream (an overload, say) raises the same exception the SDK's own
stream raises for it.
"""

import json
from collections.abc import AsyncIterator

import anthropic
import httpx2
import jiter
from anthropic.types import Message

# Usage counts on a message_delta are cumulative totals: they overwrite message_start's; one
# left out (None) keeps its earlier value.
_USAGE_TOTALS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
)


async def events(
    client: anthropic.AsyncAnthropic, response: httpx2.Response
) -> AsyncIterator[dict]:
    """The data of each server-sent event in `response`'s body, as parsed JSON."""
    pending = b""
    async for chunk in response.aiter_bytes():
        pending = pending + chunk if pending else chunk
        # Most chunks hold one whole event; one cut short waits for the rest.
        if b"\n\n" not in pending and b"\r" not in pending:
            continue
        *complete, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
        for raw in complete:
            name, data = _fields(raw)
            if name == "error":
                raise _error(client, response, data)
            if data and name != "ping":
                # jiter (the SDK's own JSON parser) takes half of json's time per event.
                yield jiter.from_json(data)


def _fields(raw: bytes) -> tuple[str | None, bytes]:
    """An event's name and its data (several data lines join with newlines, as SSE says)."""
    name, data = None, []
    for line in raw.split(b"\n"):
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"event":
            name = value.decode()
        elif field == b"data":
            data.append(value)
    return name, b"\n".join(data)


def _error(client, response: httpx2.Response, data: bytes) -> anthropic.APIStatusError:
    try:
        body = json.loads(data)
        message = f"{body}"
    except ValueError:
        body = message = data.decode(errors="replace") or f"Error code: {response.status_code}"
    # The SDK's own stream builds its exception so: the class follows the error's type.
    return client._make_status_error(message, body=body, response=response)


class StreamedMessage:
    """The message a stream of events adds up to."""

    def __init__(self):
        self._start: dict | None = None
        self._blocks: list[dict] = []
        self._stop_reason = None
        self._stop_sequence = None
        self._usage: dict = {}

    def add(self, event: dict) -> None:
        kind = event["type"]
        if kind == "content_block_delta":
            block, delta = self._blocks[event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"].append(delta["text"])
            elif delta["type"] == "input_json_delta":
                block["json"].append(delta["partial_json"])
        elif kind == "content_block_start":
            block = event["content_block"]
            self._blocks.append({"type": block["type"], "block": block, "text": [], "json": []})
        elif kind == "message_start":
            self._start = event["message"]
            self._usage = {name: self._start["usage"].get(name) for name in _USAGE_TOTALS}
        elif kind == "message_delta":
            self._stop_reason = event["delta"].get("stop_reason")
            self._stop_sequence = event["delta"].get("stop_sequence")
            for name in _USAGE_TOTALS:
                value = (event.get("usage") or {}).get(name)
                if value is not None:
                    self._usage[name] = value

    def message(self) -> Message:
        if self._start is None:
            raise anthropic.APIResponseValidationError(
                response=None, body=None, message="The stream ended before message_start."
            )
        return Message.model_validate(
            {
                **self._start,
                # Only the kinds of block this platform asks for: text and tool calls.
                "content": [b for b in map(self._block, self._blocks) if b is not None],
                "stop_reason": self._stop_reason,
                "stop_sequence": self._stop_sequence,
                "usage": {**self._start["usage"], **self._usage},
            }
        )

    @staticmethod
    def _block(block: dict) -> dict | None:
        if block["type"] == "text":
            return {"type": "text", "text": "".join(block["text"])}
        if block["type"] == "tool_use":
            started = block["block"]
            raw = "".join(block["json"])
            return {
                "type": "tool_use",
                "id": started["id"],
                "name": started["name"],
                # Leniently, as the SDK does: a call cut off at max_tokens leaves its JSON
                # unfinished, and the answer format says why that answer is no good.
                "input": _partial_json(raw) if raw else (started.get("input") or {}),
            }
        return None


def _partial_json(raw: str):
    return jiter.from_json(raw.encode(), partial_mode="trailing-strings")
