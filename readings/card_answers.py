"""A card batch's answer as structured data: one interpretation per position, by index.

Splitting free text at position names guessed wrong whenever a model did not follow the
shape asked for (a position got another card's text, or the same text twice). Instead the
model is made to call a tool whose input lists each interpretation under its position's
index, the indexes limited to the batch's. The tool's input streams as JSON; what has come
is parsed leniently (jiter's trailing-strings mode) every few deltas and at the block's end,
and the new text of each position is handed on. When the answer is complete it is
validated: exactly the batch's positions, each once, each with text. Anything else is an
invalid answer, a failed attempt (retried, then the fallback), never text for the wrong card.
"""

from dataclasses import dataclass, field

import jiter

from allocation.calls import InvalidAnswer

TOOL_NAME = "record_interpretations"
# Parsing the whole answer again at every delta (a few characters each) made feeding a batch
# quadratic in its length. Text is handed on once this many characters have come since the
# last parse (a few deltas, well within live.FLUSH_INTERVAL_S), at once until some has been,
# and at the end of the block.
PARSE_EVERY_CHARS = 64


def tool(position_indexes: list[int]) -> dict:
    return {
        "name": TOOL_NAME,
        "description": "Record the interpretation of each card of this step, one entry per "
        "position, in the order given. Write each text in the reading's language.",
        "input_schema": {
            "type": "object",
            "properties": {
                "interpretations": {
                    "type": "array",
                    "minItems": len(position_indexes),
                    "maxItems": len(position_indexes),
                    "items": {
                        "type": "object",
                        "properties": {
                            "position": {
                                "type": "integer",
                                "enum": list(position_indexes),
                                "description": "The position's number, as in the layout.",
                            },
                            "text": {
                                "type": "string",
                                "description": "The interpretation of that position's card: "
                                "one short paragraph of plain prose.",
                            },
                        },
                        "required": ["position", "text"],
                    },
                }
            },
            "required": ["interpretations"],
        },
    }


@dataclass
class CardBatchAnswer:
    """The answer format of one card batch (allocation.calls.AnswerFormat)."""

    position_indexes: list[int]
    _json: str = ""
    _parsed: int = 0  # characters of _json parsed so far
    _seen: dict[int, int] = field(default_factory=dict)  # characters handed on, per position

    def request(self) -> dict:
        return {
            "tools": [tool(self.position_indexes)],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
        }

    def start(self) -> None:
        """A new attempt: nothing of the last one's answer carries over."""
        self._json, self._parsed, self._seen = "", 0, {}

    def feed(self, event: dict) -> list[tuple[int | None, str]]:
        """The new text in a stream event, as (position index, text) pairs."""
        ended = event["type"] == "content_block_stop"
        if event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] != "input_json_delta":
                return []
            self._json += delta["partial_json"]
            if self._seen and len(self._json) - self._parsed < PARSE_EVERY_CHARS:
                return []
        elif not ended or len(self._json) == self._parsed:
            return []
        self._parsed = len(self._json)
        try:
            partial = jiter.from_json(self._json.encode(), partial_mode="trailing-strings")
        except ValueError:
            return []  # e.g. cut inside an escape: a later parse (or the block's end) completes it
        deltas = []
        items = _items(partial)
        for n, item in enumerate(items):
            if not ended and n == len(items) - 1 and list(item)[-1:] == ["position"]:
                continue  # the number may be cut short ("1" of "12"): wait for what follows
            position, text = item.get("position"), item.get("text")
            if position not in self.position_indexes or not isinstance(text, str):
                continue  # not yet known whose text it is: wait, rather than guess
            seen = self._seen.get(position, 0)
            if len(text) > seen:
                deltas.append((position, text[seen:]))
                self._seen[position] = len(text)
        return deltas

    def result(self, message) -> dict[int, str]:
        """The validated interpretations, by position index; InvalidAnswer otherwise."""
        calls = [b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME]
        if len(calls) != 1:
            raise InvalidAnswer(f"expected one {TOOL_NAME} call, got {len(calls)}")
        if message.stop_reason == "max_tokens":
            raise InvalidAnswer("the answer was cut off at max_tokens")
        texts: dict[int, str] = {}
        for item in _items(calls[0].input):
            position, text = item.get("position"), item.get("text")
            if position not in self.position_indexes:
                raise InvalidAnswer(f"an interpretation for position {position!r}, not asked for")
            if position in texts:
                raise InvalidAnswer(f"position {position} interpreted twice")
            if not isinstance(text, str) or not text.strip():
                raise InvalidAnswer(f"no text for position {position}")
            texts[position] = text.strip()
        missing = [i for i in self.position_indexes if i not in texts]
        if missing:
            raise InvalidAnswer(f"no interpretation for positions {missing}")
        return {i: texts[i] for i in self.position_indexes}


def _items(value) -> list[dict]:
    items = value.get("interpretations") if isinstance(value, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def joined(texts: dict[int, str], names: dict[int, str]) -> str:
    """The batch's text as one piece (the task's output, for staff): each position's
    interpretation under its name."""
    return "\n\n".join(f"{names[i]}: {text}" for i, text in texts.items())
