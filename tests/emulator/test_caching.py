"""Prompt caching accounting: which tokens are written, read, or plain input."""

import asyncio

import anthropic
import pytest

from emulator import Emulator, Knobs

MODEL = "claude-haiku-4-5"
SYSTEM_TEXT = "You are a warm tarot reader. " * 20  # 580 characters: 145 tokens
QUESTION = [{"role": "user", "content": "What does The Star mean for me?"}]  # 31 chars: 8 tokens


def cached_system(text=SYSTEM_TEXT, **cache_control):
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", **cache_control}}]


@pytest.fixture
def emu():
    with Emulator(Knobs(ttft_ms=1, ms_per_token=0, cache_min_tokens=0)) as emu:
        yield emu


@pytest.fixture
def client(emu):
    with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
        yield client


def ask(client, model=MODEL, system=None, messages=QUESTION):
    system = cached_system() if system is None else system
    return client.messages.create(model=model, max_tokens=50, system=system, messages=messages)


def test_the_first_call_writes_the_cache_and_the_next_reads_it(emu, client):
    first, second = ask(client), ask(client)

    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (
        145,
        0,
    )
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (
        0,
        145,
    )
    # input_tokens counts only what is neither written nor read.
    assert first.usage.input_tokens == second.usage.input_tokens == 8
    stats = emu.stats()
    assert (stats["cache_creation_input_tokens"], stats["cache_read_input_tokens"]) == (145, 145)
    assert stats["input_tokens"] == 16


def test_a_different_question_still_reads_the_shared_prefix(client):
    ask(client)
    other = ask(client, messages=[{"role": "user", "content": "And the Moon?"}])

    assert other.usage.cache_read_input_tokens == 145
    assert other.usage.input_tokens == 4


def test_the_cache_is_per_model(client):
    ask(client, model="model-a")
    other_model = ask(client, model="model-b")

    assert other_model.usage.cache_creation_input_tokens == 145


def test_without_cache_control_nothing_is_cached(client):
    plain = [{"type": "text", "text": SYSTEM_TEXT}]
    ask(client, system=plain)
    again = ask(client, system=plain)

    assert again.usage.cache_read_input_tokens == again.usage.cache_creation_input_tokens == 0
    assert again.usage.input_tokens == 145 + 8


def test_a_longer_prefix_reads_the_shorter_one_and_writes_the_rest(client):
    ask(client)
    history = [
        {"role": "user", "content": "First question about The Star?"},  # 31 chars: 8 tokens
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "x" * 40, "cache_control": {"type": "ephemeral"}}],
        },  # 10 tokens
        {"role": "user", "content": "And then?"},  # 3 tokens
    ]
    longer = ask(client, messages=history)

    assert longer.usage.cache_read_input_tokens == 145
    assert longer.usage.cache_creation_input_tokens == 8 + 10
    assert longer.usage.input_tokens == 3


def test_entries_expire_after_the_ttl(emu, client):
    emu.configure(cache_ttl_s=0)
    ask(client)

    assert ask(client).usage.cache_creation_input_tokens == 145


def test_prefixes_below_the_minimum_are_not_cached(emu, client):
    emu.configure(cache_min_tokens=1024)
    ask(client)
    again = ask(client)

    assert again.usage.cache_creation_input_tokens == again.usage.cache_read_input_tokens == 0


def test_parallel_first_calls_all_write_because_the_entry_is_not_ready_yet():
    async def three_at_once(emu):
        async with anthropic.AsyncAnthropic(
            base_url=emu.base_url, api_key="x", max_retries=0
        ) as client:
            calls = [
                client.messages.create(
                    model=MODEL, max_tokens=20, system=cached_system(), messages=QUESTION
                )
                for _ in range(3)
            ]
            return await asyncio.gather(*calls)

    with Emulator(Knobs(ttft_ms=100, ms_per_token=0, cache_min_tokens=0)) as emu:
        messages = asyncio.run(three_at_once(emu))

    assert [m.usage.cache_creation_input_tokens for m in messages] == [145, 145, 145]


def test_reset_empties_the_cache(emu, client):
    ask(client)
    emu.reset()

    assert ask(client).usage.cache_creation_input_tokens == 145


def test_more_than_four_breakpoints_is_a_bad_request(client):
    blocks = [
        {"type": "text", "text": f"block {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError):
        ask(client, system=blocks)


def test_each_model_has_its_own_minimum_cacheable_prefix():
    # 1,100 tokens: enough for a Sonnet (1,024) but not for Haiku 4.5 or 5.5 (4,096).
    long_system = "You are a warm tarot reader. " * 152  # 4,408 characters: 1,102 tokens
    with (
        Emulator(Knobs(ttft_ms=1, ms_per_token=0)) as emu,
        anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client,
    ):
        for model, cached in [
            ("claude-sonnet-5", True),
            ("claude-sonnet-4-5", True),
            ("claude-haiku-5-5", False),
            ("claude-haiku-4-5", False),
            ("claude-opus-4-5", False),
        ]:
            ask(client, model=model, system=cached_system(long_system))
            again = ask(client, model=model, system=cached_system(long_system))
            assert again.usage.cache_read_input_tokens == (1102 if cached else 0), model
            assert again.usage.cache_creation_input_tokens == 0, model


def test_writes_are_split_by_ttl_in_the_usage(emu, client):
    one_hour = cached_system(ttl="1h")
    five_minutes = [
        {"type": "text", "text": "Today's cards: The Star.", "cache_control": {"type": "ephemeral"}}
    ]
    first = ask(client, system=one_hour + five_minutes)

    assert first.usage.cache_creation_input_tokens == 145 + 6
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 145
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 6
    stats = emu.stats()
    assert (stats["ephemeral_1h_input_tokens"], stats["ephemeral_5m_input_tokens"]) == (145, 6)


def test_a_one_hour_entry_outlives_the_five_minute_ttl(emu, client):
    emu.configure(cache_ttl_s=0)
    ask(client, system=cached_system(ttl="1h"))

    assert ask(client, system=cached_system(ttl="1h")).usage.cache_read_input_tokens == 145
    assert ask(client).usage.cache_read_input_tokens == 145  # same bytes, same entry


class FakeClock:
    """The emulator's clock (what its prompt cache is stamped with), moved by the test."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_read_refreshes_the_entrys_ttl(monkeypatch):
    with (
        Emulator(Knobs(ttft_ms=1, ms_per_token=0, cache_min_tokens=0, cache_ttl_s=0.4)) as emu,
        anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client,
    ):
        clock = FakeClock()
        monkeypatch.setattr(emu._app, "_now", clock)
        ask(client)
        for _ in range(3):  # 0.75 s in all: past the first TTL, each read inside the last
            clock.advance(0.25)
            assert ask(client).usage.cache_read_input_tokens == 145
        # Unread for longer than the TTL, the entry is gone: the clock above is the one the
        # cache goes by.
        clock.advance(0.5)
        again = ask(client).usage
        assert (again.cache_read_input_tokens, again.cache_creation_input_tokens) == (0, 145)


def test_cache_reads_are_not_charged_to_the_input_tokens_bucket():
    with (
        Emulator(Knobs(ttft_ms=1, ms_per_token=0, cache_min_tokens=0, itpm=60 * 300)) as emu,
        anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client,
    ):
        ask(client)  # writes 145 and sends 8: 153 of the one-second bucket of 300
        for _ in range(5):  # each reads 145 and sends 8: only the 8 count, or the next 429s
            assert ask(client).usage.cache_read_input_tokens == 145
        assert emu.stats()["rate_limited"] == 0
