"""A call reads the SDK's raw stream events into the same message the SDK's own MessageStream
helper would have built: text, tool input, stop reason and usage."""

import asyncio

import anthropic
import pytest

from allocation.calls import InvalidAnswer
from allocation.stream_reader import StreamedMessage
from readings.card_answers import CardBatchAnswer

REQUEST = {
    "model": "claude-haiku-4-5",
    "max_tokens": 400,
    "system": [{"type": "text", "text": "You read tarot cards."}],
    "messages": [{"role": "user", "content": "1. Past: The Tower, upright. 2. Present: ..."}],
}


def both(emulator_server, **request):
    """(what the raw events add up to, what the SDK's helper builds) for the same request."""

    async def read():
        async with anthropic.AsyncAnthropic(
            base_url=emulator_server.base_url, api_key="x", max_retries=0
        ) as client:
            streamed = StreamedMessage()
            async with await client.messages.create(stream=True, **request) as stream:
                async for event in stream:
                    streamed.add(event)
            async with client.messages.stream(**request) as helper:
                expected = await helper.get_final_message()
            return streamed.message(), expected

    return asyncio.run(read())


def blocks(message) -> list[tuple]:
    """What a call reads of a message's content (ids are random per request)."""
    return [
        (b.type, getattr(b, "text", None), getattr(b, "name", None), getattr(b, "input", None))
        for b in message.content
    ]


@pytest.mark.parametrize("tool", [False, True], ids=["text", "tool call"])
def test_the_raw_events_add_up_to_the_sdks_own_message(emulator_server, tool):
    extra = CardBatchAnswer([1, 2]).request() if tool else {}

    got, expected = both(emulator_server, **REQUEST, **extra)

    assert blocks(got) == blocks(expected)
    assert (got.stop_reason, got.usage) == (expected.stop_reason, expected.usage)
    assert got.content  # an answer, not an empty message


def test_a_tool_call_cut_off_at_max_tokens_is_refused_as_an_answer(emulator_server):
    cut_off = {**REQUEST, "max_tokens": 20, **CardBatchAnswer([1, 2]).request()}

    got, expected = both(emulator_server, **cut_off)

    assert got.stop_reason == expected.stop_reason == "max_tokens"
    with pytest.raises(InvalidAnswer, match="cut off at max_tokens"):
        CardBatchAnswer([1, 2]).result(got)
