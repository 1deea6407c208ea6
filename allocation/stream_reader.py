"""A streamed answer read from the SDK's raw events (`messages.create(stream=True)`).

The SDK's MessageStream helper rebuilds a snapshot of the whole message at every event, and for
a tool call re-parses all of the tool's JSON so far at every delta: for a card batch streaming a
few hundred deltas, that was the worker's largest cost after its database work. The raw stream
gives the same events (the SDK still does the HTTP, the SSE decoding and the errors, a
mid-stream `error` event included); this keeps only what a call needs at the end: the text and
tool blocks, the stop reason and the usage.
"""

import anthropic
import jiter
from anthropic.types import Message, TextBlock, ToolUseBlock

# Usage counts on a message_delta are cumulative totals: they overwrite message_start's; one
# left out (None) keeps its earlier value.
_USAGE_TOTALS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
)


class StreamedMessage:
    """The message a stream of raw events adds up to."""

    def __init__(self):
        self._start: Message | None = None
        self._blocks: list[dict] = []
        self._stop_reason = None
        self._stop_sequence = None
        self._usage: dict = {}

    def add(self, event) -> None:
        kind = event.type
        if kind == "content_block_delta":
            block, delta = self._blocks[event.index], event.delta
            if delta.type == "text_delta":
                block["text"].append(delta.text)
            elif delta.type == "input_json_delta":
                block["json"].append(delta.partial_json)
        elif kind == "content_block_start":
            block = event.content_block
            self._blocks.append({"type": block.type, "block": block, "text": [], "json": []})
        elif kind == "message_start":
            self._start = event.message
            self._usage = {name: getattr(event.message.usage, name) for name in _USAGE_TOTALS}
        elif kind == "message_delta":
            self._stop_reason = event.delta.stop_reason
            self._stop_sequence = event.delta.stop_sequence
            for name in _USAGE_TOTALS:
                value = getattr(event.usage, name, None)
                if value is not None:
                    self._usage[name] = value

    def message(self) -> Message:
        if self._start is None:
            raise anthropic.APIResponseValidationError(
                response=None, body=None, message="The stream ended before message_start."
            )
        return self._start.model_copy(
            update={
                "content": [self._block(block) for block in self._blocks],
                "stop_reason": self._stop_reason,
                "stop_sequence": self._stop_sequence,
                "usage": self._start.usage.model_copy(update=self._usage),
            }
        )

    @staticmethod
    def _block(block: dict):
        if block["type"] == "text":
            return TextBlock(type="text", text="".join(block["text"]), citations=None)
        if block["type"] == "tool_use":
            started = block["block"]
            raw = "".join(block["json"])
            return ToolUseBlock(
                type="tool_use",
                id=started.id,
                name=started.name,
                # Leniently, as the SDK does: a call cut off at max_tokens leaves its JSON
                # unfinished, and the answer format says why that answer is no good.
                input=_partial_json(raw) if raw else (started.input or {}),
            )
        return block["block"]  # a kind this platform does not ask for, as it started


def _partial_json(raw: str):
    return jiter.from_json(raw.encode(), partial_mode="trailing-strings")
