"""The emulator speaks the Messages API well enough for the official SDK, sync and async."""

import asyncio
import json
import re
import time
import urllib.error
import urllib.request

import anthropic
import pytest

from emulator import Emulator, Knobs

MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello, what do the cards say?"}]


@pytest.fixture
def emu():
    with Emulator(Knobs(ttft_ms=1, ms_per_token=0)) as emu:
        yield emu


def client_for(emu, **options):
    return anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0, **options)


def post(emu, path, body):
    """A raw POST, for what the SDK would refuse to send. Returns (status, headers, body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        emu.base_url + path, data=data, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_it_returns_a_message_shaped_like_anthropics(emu):
    status, headers, raw = post(
        emu, "/v1/messages", {"model": "any-model-id", "max_tokens": 1024, "messages": HELLO}
    )
    body = json.loads(raw)

    assert status == 200
    assert headers["request-id"].startswith("req_")
    assert set(body) == {
        "id",
        "type",
        "role",
        "content",
        "model",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "any-model-id")
    assert body["content"][0]["type"] == "text" and body["content"][0]["text"]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert set(body["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "service_tier",
    }
    assert set(body["usage"]["cache_creation"]) == {
        "ephemeral_5m_input_tokens",
        "ephemeral_1h_input_tokens",
    }


def test_the_sync_sdk_gets_a_message_with_usage(emu):
    with client_for(emu) as client:
        message = client.messages.create(
            model=MODEL, max_tokens=1024, system="You read tarot.", messages=HELLO
        )

    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    # ceil(chars / 4) per block: the system prompt and the one message.
    assert message.usage.input_tokens == 4 + 8
    assert 1 <= message.usage.output_tokens <= 320
    assert message.usage.output_tokens == -(-len(message.content[0].text) // 4)
    stats = emu.stats()
    assert (stats["requests"], stats["ok"]) == (1, 1)
    assert stats["output_tokens"] == message.usage.output_tokens
    assert stats["by_model"][MODEL]["ok"] == 1


def test_the_answer_stops_at_max_tokens(emu):
    with client_for(emu) as client:
        message = client.messages.create(model=MODEL, max_tokens=5, messages=HELLO)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert len(message.content[0].text) == 20


def test_the_async_sdk_streams_the_same_text_it_would_return_whole(emu):
    async def both():
        async with anthropic.AsyncAnthropic(
            base_url=emu.base_url, api_key="x", max_retries=0
        ) as client:
            whole = await client.messages.create(model=MODEL, max_tokens=1024, messages=HELLO)
            pieces = []
            async with client.messages.stream(
                model=MODEL, max_tokens=1024, messages=HELLO
            ) as stream:
                async for text in stream.text_stream:
                    pieces.append(text)
                final = await stream.get_final_message()
            return whole, pieces, final

    whole, pieces, final = asyncio.run(both())

    assert len(pieces) > 1
    assert "".join(pieces) == whole.content[0].text == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_a_stream_sends_anthropics_events_in_order(emu):
    status, headers, raw = post(
        emu, "/v1/messages", {"model": MODEL, "max_tokens": 40, "messages": HELLO, "stream": True}
    )
    events = re.findall(r"^event: (\w+)$", raw.decode(), flags=re.MULTILINE)
    datas = [json.loads(d) for d in re.findall(r"^data: (.+)$", raw.decode(), flags=re.MULTILINE)]

    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert set(events[3:-3]) == {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert [d["type"] for d in datas] == events
    assert datas[0]["message"]["usage"]["input_tokens"] == 8
    assert datas[-2]["delta"]["stop_reason"] == "max_tokens"
    assert datas[-2]["usage"]["output_tokens"] == 40


def test_stream_true_through_create_yields_typed_events(emu):
    with client_for(emu) as client:
        stream = client.messages.create(model=MODEL, max_tokens=30, messages=HELLO, stream=True)
        types = [event.type for event in stream]

    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_delta" in types


def test_raw_responses_carry_a_request_id(emu):
    with client_for(emu) as client:
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=HELLO)
        message = raw.parse()

    assert raw.headers["request-id"].startswith("req_")
    assert message.content[0].text


def test_a_missing_field_is_a_400_invalid_request_error(emu):
    status, headers, raw = post(emu, "/v1/messages", {"model": MODEL, "messages": HELLO})

    assert status == 400
    assert headers["request-id"]
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
    assert emu.stats()["bad_requests"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"max_tokens": 10, "messages": HELLO},
        {"model": MODEL, "max_tokens": 10},
        {"model": MODEL, "max_tokens": 10, "messages": []},
        {"model": MODEL, "max_tokens": 10, "messages": [{"role": "robot", "content": "hi"}]},
        {"model": MODEL, "max_tokens": 10, "messages": HELLO, "temperature": 3},
        b"{not json",
    ],
)
def test_malformed_requests_are_refused(emu, body):
    status, _, raw = post(emu, "/v1/messages", body)

    assert status == 400
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"


def test_the_sdk_raises_bad_request_for_a_400(emu):
    with client_for(emu) as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=0, messages=HELLO)

    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_count_tokens_uses_the_same_estimate(emu):
    with client_for(emu) as client:
        counted = client.messages.count_tokens(
            model=MODEL, system="You read tarot.", messages=HELLO
        )

    assert counted.input_tokens == 12


def test_an_answer_takes_ttft_plus_time_per_token():
    with (
        Emulator(Knobs(ttft_ms=100, ms_per_token=1)) as emu,
        client_for(emu) as client,
    ):
        started = time.perf_counter()
        message = client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
        elapsed = time.perf_counter() - started

    # A lower bound only: how much slower it may be is the benchmark's business.
    assert elapsed >= 0.1 + message.usage.output_tokens * 0.001
