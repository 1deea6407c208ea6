"""The emulator answers a forced tool call the way the platform's card batches ask for it,
streamed as input_json_delta, and answers in Korean when the guide is in Korean."""

import re

import anthropic
import pytest

from emulator import Emulator, Knobs
from readings.card_answers import CardBatchAnswer, tool

MODEL = "claude-haiku-4-5"
HANGUL = re.compile(r"[\uac00-\ud7a3]")
LAYOUT = (
    "The spread as laid out:\n1. Past: The Tower, upright\n2. Present: The Star, reversed\n"
    "3. Future: The Moon, upright\n\n"
    "Interpret these cards:\nPast: The Tower, upright\nPresent: The Star, reversed\n"
    "Future: The Moon, upright"
)


@pytest.fixture
def emu():
    with Emulator(Knobs(ttft_ms=1, ms_per_token=0)) as emu:
        yield emu


def ask(emu, *, system="You are a tarot reader.", positions=(1, 2, 3), max_tokens=1024):
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0)
    answer = CardBatchAnswer(list(positions))
    answer.start()
    streamed: dict = {}
    with client.messages.stream(
        model=MODEL,
        max_tokens=max_tokens,
        system=system,
        messages=[{"role": "user", "content": LAYOUT}],
        **answer.request(),
    ) as stream:
        for event in stream:
            for position, text in answer.feed(event.model_dump()):
                streamed[position] = streamed.get(position, "") + text
        message = stream.get_final_message()
    return answer, message, streamed


def test_a_forced_tool_gets_one_interpretation_per_position_in_order(emu):
    answer, message, streamed = ask(emu)

    texts = answer.result(message)
    assert message.stop_reason == "tool_use"
    assert list(texts) == [1, 2, 3]
    assert "The Tower" in texts[1] and "The Star reversed" in texts[2] and "The Moon" in texts[3]
    assert {p: t.strip() for p, t in streamed.items()} == texts  # streamed, position by position


def test_a_korean_guide_gets_korean_interpretations(emu):
    answer, message, _ = ask(emu, system="당신은 타로 리더입니다. 한국어로 답하세요.")

    texts = answer.result(message)
    assert all(HANGUL.search(text) for text in texts.values())
    assert "탑" in texts[1] and "별(역방향)" in texts[2] and "달" in texts[3]


def test_an_answer_cut_off_by_max_tokens_is_not_a_valid_call(emu):
    answer, message, _ = ask(emu, max_tokens=20)

    assert message.stop_reason == "max_tokens"
    with pytest.raises(anthropic.APIError, match="Invalid answer"):
        answer.result(message)


def test_a_tool_choice_naming_no_tool_is_refused(emu):
    client = anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0)

    with pytest.raises(anthropic.BadRequestError, match="no tool named"):
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": "Hi"}],
            tools=[tool([1])],
            tool_choice={"type": "tool", "name": "something_else"},
        )
