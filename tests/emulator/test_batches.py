"""The Message Batches API through the official SDK: create, retrieve, results, cancel."""

import anthropic
import pytest

from emulator import Emulator, Knobs
from tests.polling import wait_for

SYSTEM = [
    {
        "type": "text",
        "text": "You are a warm tarot reader. " * 20,  # 145 tokens
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
]


def params(question="What does The Star mean for me?", model="claude-sonnet-5"):
    return {
        "model": model,
        "max_tokens": 60,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": question}],
    }


@pytest.fixture
def emu():
    with Emulator(Knobs(ttft_ms=1, ms_per_token=0, cache_min_tokens=0, batch_delay_s=0.2)) as emu:
        yield emu


@pytest.fixture
def client(emu):
    with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
        yield client


def wait_until_ended(client, batch_id, timeout_s=10.0):
    wait_for(
        lambda: client.messages.batches.retrieve(batch_id).processing_status == "ended",
        timeout=timeout_s,
        what=f"batch {batch_id} to end",
    )
    return client.messages.batches.retrieve(batch_id)


def test_a_batch_is_in_progress_then_ends_with_a_result_per_custom_id(client):
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "task-1", "params": params()},
            {"custom_id": "task-2", "params": params("And the Moon?")},
        ]
    )
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 2 and batch.results_url is None

    ended = wait_until_ended(client, batch.id)
    assert ended.request_counts.succeeded == 2 and ended.ended_at is not None
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"task-1", "task-2"}
    assert all(r.type == "succeeded" and r.message.content[0].text for r in results.values())
    assert results["task-1"].message.usage.service_tier == "batch"


def test_later_requests_of_a_batch_read_the_cache_earlier_ones_wrote(client):
    batch = client.messages.batches.create(
        requests=[{"custom_id": f"t{i}", "params": params(f"Question {i}?")} for i in range(3)]
    )
    wait_until_ended(client, batch.id)
    usage = {r.custom_id: r.result.message.usage for r in client.messages.batches.results(batch.id)}

    assert usage["t0"].cache_creation.ephemeral_1h_input_tokens == 145
    assert [usage[t].cache_read_input_tokens for t in ("t1", "t2")] == [145, 145]


def test_a_request_for_a_failing_model_errors_alone(emu, client):
    emu.configure(failing_models="claude-broken")
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "good", "params": params()},
            {"custom_id": "bad", "params": params(model="claude-broken")},
        ]
    )
    ended = wait_until_ended(client, batch.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}

    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 1)
    assert results["bad"].type == "errored"
    assert results["bad"].error.error.type == "api_error"


def test_a_canceled_batch_ends_with_its_requests_canceled(emu, client):
    emu.configure(batch_delay_s=30)
    batch = client.messages.batches.create(requests=[{"custom_id": "t", "params": params()}])
    canceled = client.messages.batches.cancel(batch.id)

    assert canceled.processing_status == "ended" and canceled.cancel_initiated_at is not None
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled"]


def test_a_batch_past_its_expiry_expires_unprocessed_requests(emu, client):
    emu.configure(batch_delay_s=5, batch_expiry_s=0.1)
    batch = client.messages.batches.create(requests=[{"custom_id": "t", "params": params()}])
    ended = wait_until_ended(client, batch.id)

    assert ended.request_counts.expired == 1
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["expired"]


def test_a_malformed_batch_is_rejected_whole_with_a_message(emu, client):
    with pytest.raises(anthropic.BadRequestError, match="used twice"):
        client.messages.batches.create(requests=[{"custom_id": "same", "params": params()}] * 2)
    emu.configure(force_batch_rejects=1)
    with pytest.raises(anthropic.BadRequestError, match="Forced batch rejection"):
        client.messages.batches.create(requests=[{"custom_id": "t", "params": params()}])
    assert emu.stats()["batches"] == 0


def test_results_before_the_batch_ends_and_unknown_batches_are_errors(emu, client):
    emu.configure(batch_delay_s=30)
    batch = client.messages.batches.create(requests=[{"custom_id": "t", "params": params()}])
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        list(client.messages.batches.results(batch.id))
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")
