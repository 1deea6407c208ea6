"""A call reads the raw bytes of the SDK's streamed response into the same message the SDK's
own MessageStream helper would have built: text, tool input, stop reason and usage; and a
mid-stream error event raises what the SDK's own stream raises."""

import asyncio

import anthropic
import pytest

from allocation.calls import InvalidAnswer
from allocation.stream_reader import StreamedMessage, events
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
            async with client.messages.with_streaming_response.create(
                stream=True, **request
            ) as response:
                async for event in events(client, response.http_response):
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


def test_an_error_event_mid_stream_raises_what_the_sdks_own_stream_raises(emulator_server):
    emulator_server.configure(broken_stream_models=frozenset({REQUEST["model"]}))

    async def read(client, ours: bool):
        if ours:
            async with client.messages.with_streaming_response.create(
                stream=True, **REQUEST
            ) as response:
                async for _ in events(client, response.http_response):
                    pass
        else:
            async with await client.messages.create(stream=True, **REQUEST) as stream:
                async for _ in stream:
                    pass

    async def both_errors():
        async with anthropic.AsyncAnthropic(
            base_url=emulator_server.base_url, api_key="x", max_retries=0
        ) as client:
            errors = []
            for ours in (True, False):
                with pytest.raises(anthropic.APIStatusError) as raised:
                    await read(client, ours)
                errors.append(raised.value)
            return errors

    try:
        ours, sdks = asyncio.run(both_errors())
    finally:
        emulator_server.configure(broken_stream_models=frozenset())

    assert type(ours) is type(sdks)
    assert (ours.message, ours.body) == (sdks.message, sdks.body)
    assert "overloaded_error" in ours.message
