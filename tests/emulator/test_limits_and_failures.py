"""Rate limits, concurrency and injected failures, seen through the official SDK."""

import asyncio
from datetime import UTC, datetime

import anthropic
import pytest

from emulator import Emulator, Knobs
from tests.polling import wait_for

MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello, what do the cards say?"}]
FAST = {"ttft_ms": 1, "ms_per_token": 0}


def client_for(emu, **options):
    return anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0, **options)


def call(client, model=MODEL, **options):
    return client.messages.with_raw_response.create(
        model=model, max_tokens=100, messages=HELLO, **options
    )


async def gather_calls(emu, count, model=MODEL):
    """`count` calls at once; returns each one's message or exception."""
    async with anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="x", max_retries=0) as c:
        calls = [
            c.messages.create(model=model, max_tokens=50, messages=HELLO) for _ in range(count)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)


def test_requests_over_rpm_get_429_with_retry_after():
    # 60 a minute is one a second; a two-second burst lets two through at once.
    with Emulator(Knobs(rpm=60, burst_s=2, **FAST)) as emu, client_for(emu) as client:
        first, second = call(client), call(client)
        with pytest.raises(anthropic.RateLimitError) as caught:
            call(client)

    assert first.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert second.headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = datetime.strptime(
        second.headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ"
    ).replace(tzinfo=UTC)
    assert 0 < (reset - datetime.now(UTC)).total_seconds() <= 3
    refused = caught.value.response
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    stats = emu.stats()
    assert (stats["ok"], stats["rate_limited"]) == (2, 1)


def test_retry_after_comes_from_the_bucket_that_ran_out():
    # 600 input tokens a minute with a one-second burst: a 10-token bucket. The first prompt
    # (far bigger) is let in on a full bucket and leaves a debt the next one must wait out.
    prompt = [{"role": "user", "content": "x" * 400}]  # 100 tokens
    with Emulator(Knobs(itpm=600, otpm=60_000, **FAST)) as emu, client_for(emu) as client:
        first = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=50, messages=prompt
        )
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model=MODEL, max_tokens=50, messages=prompt)

    assert first.headers["anthropic-ratelimit-input-tokens-limit"] == "600"
    assert first.headers["anthropic-ratelimit-input-tokens-remaining"] == "0"
    assert first.headers["anthropic-ratelimit-output-tokens-limit"] == "60000"
    assert "anthropic-ratelimit-requests-limit" not in first.headers  # rpm unlimited
    # 100 tokens of debt below zero plus 10 to fill, at 10 a second.
    assert caught.value.response.headers["retry-after"] == "10"


def test_output_tokens_are_held_from_max_tokens_until_the_answer_ends():
    # 6,000 output tokens a minute with a one-second burst: a 100-token bucket. Anthropic
    # charges max_tokens when a request starts and gives the unused part back at its end.
    slow = {"ttft_ms": 400, "ms_per_token": 0, "output_tokens_min": 20, "output_tokens_max": 20}

    async def two_at_once(max_tokens):
        async with anthropic.AsyncAnthropic(
            base_url=emu.base_url, api_key="x", max_retries=0
        ) as client:

            async def ask():
                return await client.messages.create(
                    model=MODEL, max_tokens=max_tokens, messages=HELLO
                )

            first = asyncio.create_task(ask())
            await asyncio.sleep(0.1)  # the first is being answered, its reservation held
            return await asyncio.gather(first, ask(), return_exceptions=True)

    with Emulator(Knobs(otpm=6_000, **slow)) as emu:
        # max_tokens 100 holds the whole bucket while the first answer is written.
        first, second = asyncio.run(two_at_once(100))
        assert first.usage.output_tokens <= 20  # far below max_tokens
        assert isinstance(second, anthropic.RateLimitError)

        emu.reset()
        # max_tokens 40 leaves room for a second call at once.
        assert not any(isinstance(r, Exception) for r in asyncio.run(two_at_once(40)))

        emu.reset()
        with client_for(emu) as client:
            call(client)  # max_tokens 100, 20 written: 80 come back at its end
            # Without the 80 back the bucket would be near empty and this refused.
            after = client.messages.with_raw_response.create(
                model=MODEL, max_tokens=50, messages=HELLO
            )
        assert int(after.headers["anthropic-ratelimit-output-tokens-remaining"]) >= 30


def test_each_model_has_its_own_buckets():
    with Emulator(Knobs(rpm=60, **FAST)) as emu, client_for(emu) as client:
        call(client, model="model-a")
        call(client, model="model-b")
        with pytest.raises(anthropic.RateLimitError):
            call(client, model="model-a")

    assert emu.stats()["by_model"]["model-a"]["rate_limited"] == 1


def test_force_429_refuses_the_next_n_requests():
    with Emulator(Knobs(**FAST)) as emu, client_for(emu) as client:
        emu.configure(force_429=2, retry_after_s=3, rpm=600)
        for _ in range(2):
            with pytest.raises(anthropic.RateLimitError) as caught:
                call(client)
            assert caught.value.response.headers["retry-after"] == "3"
            assert caught.value.response.headers["anthropic-ratelimit-requests-limit"] == "600"
        assert call(client).parse().content

    assert emu.knobs.force_429 == 0
    assert emu.stats()["rate_limited"] == 2


def test_an_overloaded_model_gets_529():
    with (
        Emulator(Knobs(overloaded_models={"claude-busy"}, **FAST)) as emu,
        client_for(emu) as client,
    ):
        with pytest.raises(anthropic.OverloadedError) as caught:
            call(client, model="claude-busy")
        assert call(client, model="claude-calm").parse().content

    assert isinstance(caught.value, anthropic.InternalServerError)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert caught.value.response.headers["request-id"]
    assert emu.stats()["by_model"]["claude-busy"]["overloaded"] == 1


def test_a_failing_model_gets_500_api_error():
    with (
        Emulator(Knobs(failing_models=["broken"], **FAST)) as emu,
        client_for(emu) as client,
        pytest.raises(anthropic.InternalServerError) as caught,
    ):
        call(client, model="broken")

    assert caught.value.status_code == 500
    assert caught.value.body["error"]["type"] == "api_error"
    assert emu.stats()["errors"] == 1


def test_injected_failures_replay_the_same_way_for_the_same_seed():
    def outcomes(emu, client):
        results = []
        for _ in range(20):
            try:
                call(client)
                results.append(200)
            except anthropic.APIStatusError as error:
                results.append(error.status_code)
        return results

    with (
        Emulator(Knobs(overloaded_rate=0.3, error_rate=0.2, seed=7, **FAST)) as emu,
        client_for(emu) as client,
    ):
        first = outcomes(emu, client)
        emu.reset()  # replays the seed
        second = outcomes(emu, client)

    assert first == second
    assert {200, 500, 529} == set(first)


def test_a_hanging_request_times_the_client_out_and_frees_its_slot():
    with (
        Emulator(Knobs(hang_rate=1.0, hang_s=600, **FAST)) as emu,
        client_for(emu, timeout=0.3) as client,
    ):
        with pytest.raises(anthropic.APITimeoutError):
            call(client)
        wait_for(  # the server notices the hang-up a moment later
            lambda: emu.stats()["in_flight"] == 0,
            timeout=5,
            what="the emulator to notice the client hung up",
            explain=lambda: str(emu.stats()),
        )
        stats = emu.stats()

    assert stats["hung"] == 1
    assert stats["in_flight"] == 0
    assert stats["client_disconnects"] == 1


def test_peak_concurrency_counts_requests_served_at_once():
    with Emulator(Knobs(ttft_ms=200, ms_per_token=0)) as emu:
        results = asyncio.run(gather_calls(emu, 8))
        stats = emu.stats()

    assert all(isinstance(r, anthropic.types.Message) for r in results)
    assert stats["peak_concurrency"] == 8
    assert stats["in_flight"] == 0


def test_requests_over_max_concurrency_get_429():
    with Emulator(Knobs(ttft_ms=200, ms_per_token=0, max_concurrency=3)) as emu:
        results = asyncio.run(gather_calls(emu, 5))
        stats = emu.stats()

    refused = [r for r in results if isinstance(r, anthropic.RateLimitError)]
    assert len(refused) == 2
    assert refused[0].response.headers["retry-after"] == "1"
    assert (stats["ok"], stats["rate_limited"], stats["peak_concurrency"]) == (3, 2, 3)


def test_changing_a_limit_at_runtime_takes_effect_at_once():
    with Emulator(Knobs(**FAST)) as emu, client_for(emu) as client:
        call(client)
        emu.configure(rpm=60, burst_s=1)
        call(client)
        with pytest.raises(anthropic.RateLimitError) as caught:
            call(client)

    assert caught.value.response.headers["retry-after"] == "1"


def test_midstream_fail_rate_cuts_that_share_of_streams_with_an_overloaded_event():
    def outcomes(emu, client):
        results = []
        for _ in range(40):
            try:
                with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as s:
                    s.until_done()
                results.append("ok")
            except anthropic.APIStatusError as error:
                assert "overloaded_error" in error.message
                results.append("cut")
        return results

    with (
        Emulator(Knobs(midstream_fail_rate=0.5, seed=3, **FAST)) as emu,
        client_for(emu) as client,
    ):
        first = outcomes(emu, client)
        emu.reset()  # replays the seed
        second = outcomes(emu, client)

    assert first == second
    assert 10 <= first.count("cut") <= 30
    assert emu.stats()["by_model"][MODEL]["overloaded"] == first.count("cut")


def test_a_midstream_fail_rate_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="midstream_fail_rate must be between 0 and 1"):
        Knobs(midstream_fail_rate=1.5)
