"""Readings stream: every call uses the SDK's streaming interface, its text is published as
it arrives (batched), and each position's text is the model's structured answer for it."""

import asyncio
from types import SimpleNamespace

import pytest

from allocation.calls import InvalidAnswer
from allocation.client_pool import runtime
from allocation.models import CallOutcome, LLMCall, ModelAllocation
from readings import live
from readings.card_answers import PARSE_EVERY_CHARS, CardBatchAnswer
from readings.engine import run_reading, run_reading_sync
from readings.models import EventKind, ReadingEvent, ReadingStatus, ReadingTask
from readings.selectors import reading_results
from readings.services import CardChoice, reading_create
from spreads.models import TaskType

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CARDS = [
    CardChoice("the-tower"),
    CardChoice("the-star", reversed=True),
    CardChoice("the-moon"),
]


def read(**kwargs):
    reading = reading_create(spread="three_card", question="Will it work out?", cards=CARDS)
    return run_reading_sync(reading.pk)


class Sent(list):
    """Every event written for viewers, in order, as (kind, data); `writes` holds each
    write's events."""

    def __init__(self):
        super().__init__()
        self.writes: list[list] = []


@pytest.fixture
def sent(monkeypatch) -> Sent:
    """What was sent while the reading ran: its rows are compacted once it ends. Every write
    of events on Postgres is built by live.publishing (a task's task_finished event is
    written with the task's row, store.finish_task)."""
    recorded = Sent()
    publishing = live.publishing

    def recording(batches):
        for _, batch in batches:
            recorded.extend(batch)
            recorded.writes.append(list(batch))
        return publishing(batches)

    monkeypatch.setattr(live, "publishing", recording)
    return recorded


def shown_texts(sent) -> dict:
    """What a viewer of the events ends up showing: each (task, position)'s deltas since the
    task last started or restarted."""
    shown: dict = {}
    for kind, data in sent:
        task = data.get("task")
        if kind in (EventKind.TASK_STARTED, EventKind.TASK_RESTARTED):
            shown = {k: v for k, v in shown.items() if k[0] != task}
        elif kind == EventKind.TEXT:
            key = (task, data["position"])
            shown[key] = shown.get(key, "") + data["text"]
    return shown


def saved_texts(reading) -> dict:
    saved = {}
    for task in ReadingTask.objects.filter(reading=reading):
        if task.task_type == TaskType.CARD_INTERPRETATION:
            saved.update({(task.pk, int(i)): text for i, text in task.texts.items()})
        else:
            saved[(task.pk, None)] = task.output
    return saved


def test_the_text_a_viewer_is_sent_adds_up_to_the_saved_reading(emulator, sent):
    reading = read()

    assert reading.status == ReadingStatus.DONE
    assert shown_texts(sent) == saved_texts(reading)
    kinds = [kind for kind, _ in sent]
    assert kinds.count(EventKind.TASK_STARTED) == kinds.count(EventKind.TASK_FINISHED) == 4
    assert kinds[-1] == EventKind.READING_FINISHED


def test_text_is_written_in_batches_not_once_per_token(emulator, sent):
    emulator.configure(ms_per_token=2)  # about a second per answer
    reading = read()

    deltas = [data for kind, data in sent if kind == EventKind.TEXT]
    # The emulator sends a delta every 4 tokens (16 characters).
    characters = sum(len(text) for text in saved_texts(reading).values())
    assert len(deltas) < characters / 16 / 3
    # Text is written a few times a second for the whole reading, not per task: every
    # FLUSH_INTERVAL_S, besides the reading's first text (at once) and each task's last.
    text_writes = [w for w in sent.writes if any(kind == EventKind.TEXT for kind, _ in w)]
    tasks = reading.tasks.count()
    assert len(text_writes) <= reading.wall_time_s / live.FLUSH_INTERVAL_S + tasks + 1


def test_readings_side_by_side_write_their_live_events_together(emulator, monkeypatch):
    emulator.configure(ms_per_token=2)
    writes = []
    publish_many = live.publish_many
    monkeypatch.setattr(
        live, "publish_many", lambda batches: (writes.append(batches), publish_many(batches))
    )
    readings = [
        reading_create(spread="three_card", question=f"Question {n}?", cards=CARDS)
        for n in range(4)
    ]

    async def side_by_side():
        return await asyncio.gather(*(run_reading(r.pk) for r in readings))

    done = runtime.run(side_by_side())

    assert {r.status for r in done} == {ReadingStatus.DONE}
    text_writes = [w for w in writes if any(kind == EventKind.TEXT for _, b in w for kind, _ in b)]
    # One write a flush for all four readings, not one each.
    assert max(len(w) for w in text_writes) == 4
    longest = max(r.wall_time_s for r in done)
    assert len(text_writes) <= longest / live.FLUSH_INTERVAL_S + 4 * (4 + 1)


def test_a_finished_reading_keeps_one_event_that_carries_it_whole(emulator, sent):
    reading = read()

    stored = list(ReadingEvent.objects.filter(reading=reading).values_list("kind", flat=True))
    # The text lives in the tasks; the stream's last event hands a late viewer the reading.
    assert stored == [EventKind.READING_FINISHED]
    assert len(sent) > 10


def test_each_position_shows_its_own_cards_text(emulator):
    reading = read()

    cards = reading_results(reading)["cards"]
    assert [c["card"] for c in cards] == ["The Tower", "The Star", "The Moon"]
    for card in cards:
        others = {"The Tower", "The Star", "The Moon"} - {card["card"]}
        assert card["card"] in card["text"]
        assert not any(other in card["text"] for other in others)
    assert "The Star reversed" in cards[1]["text"]


def test_a_stream_that_breaks_restarts_its_task_without_repeating_text(emulator, sent):
    # Every card batch's stream from the allocated model breaks halfway; its fallback's does not.
    emulator.configure(broken_stream_models=frozenset({"claude-haiku-5-5"}))

    reading = read()

    assert reading.status == ReadingStatus.DONE
    card_task = reading.tasks.get(task_type=TaskType.CARD_INTERPRETATION)
    calls = LLMCall.objects.filter(task=card_task).order_by("attempt")
    assert [(c.model, c.outcome) for c in calls][-1] == ("claude-haiku-4-5", CallOutcome.OK)
    assert {c.outcome for c in calls[: len(calls) - 1]} == {CallOutcome.OVERLOADED}
    restarts = [
        data
        for kind, data in sent
        if kind == EventKind.TASK_RESTARTED and data["task"] == card_task.pk
    ]
    assert len(restarts) == len(calls) - 1
    # What a viewer shows is the fallback's answer once, not the broken halves before it.
    assert shown_texts(sent) == saved_texts(reading)


def test_an_answer_that_cannot_be_mapped_to_positions_fails_the_attempt(emulator):
    # Too few tokens for the interpretations: the tool call is cut off, on every model.
    ModelAllocation.objects.filter(task_type=TaskType.CARD_INTERPRETATION).update(max_tokens=40)
    emulator.configure(output_tokens_min=300, output_tokens_max=300)

    reading = read()

    assert reading.status == ReadingStatus.FAILED
    card_task = reading.tasks.get(task_type=TaskType.CARD_INTERPRETATION)
    calls = LLMCall.objects.filter(task=card_task).order_by("attempt")
    # Retried once on its model, then the fallback (the last model, tried to the end).
    assert [c.model for c in calls][:3] == [
        "claude-haiku-5-5",
        "claude-haiku-5-5",
        "claude-haiku-4-5",
    ]
    assert all(c.outcome == CallOutcome.ERROR and "Invalid answer" in c.error for c in calls)
    assert all(c.cost_usd > 0 for c in calls)  # each was answered, so paid for
    assert card_task.texts == {} and card_task.output == ""
    assert all(card["text"] == "" for card in reading_results(reading)["cards"])


def message(*items, stop_reason="tool_use"):
    block = SimpleNamespace(
        type="tool_use", name="record_interpretations", input={"interpretations": list(items)}
    )
    return SimpleNamespace(content=[block], stop_reason=stop_reason)


@pytest.mark.parametrize(
    "items",
    [
        [{"position": 4, "text": "a"}, {"position": 4, "text": "b"}],  # twice, one missing
        [{"position": 4, "text": "a"}],  # one missing
        [{"position": 4, "text": "a"}, {"position": 9, "text": "b"}],  # not asked for
        [{"position": 4, "text": "a"}, {"position": 5, "text": "  "}],  # empty
    ],
)
def test_a_batch_answer_must_map_each_position_once(items):
    with pytest.raises(InvalidAnswer):
        CardBatchAnswer([4, 5]).result(message(*items))


def test_a_batch_answer_in_any_order_is_read_by_position():
    answer = CardBatchAnswer([4, 5]).result(
        message({"position": 5, "text": "five"}, {"text": "four", "position": 4})
    )
    assert answer == {4: "four", 5: "five"}


def delta(partial_json):
    return {
        "type": "content_block_delta",
        "delta": {"type": "input_json_delta", "partial_json": partial_json},
    }


BLOCK_END = {"type": "content_block_stop", "index": 0}


def test_streamed_text_is_handed_on_only_once_its_position_is_known():
    answer = CardBatchAnswer([1, 12])
    answer.start()
    chunks = ['{"interpretations": [{"position": 1', '2, "text": "Hel', 'lo"}, {"text": "x', '"']
    got = [answer.feed(delta(c)) for c in chunks] + [answer.feed(BLOCK_END)]
    # "1" could still become "12": nothing is attributed until the number is complete. The
    # first text goes at once; what follows a few characters at a time, the rest at the end.
    assert got == [[], [(12, "Hel")], [], [], [(12, "lo")]]


def test_a_long_answer_is_handed_on_every_few_deltas_and_whole_by_its_end():
    answer = CardBatchAnswer([3])
    answer.start()
    text = "The Tower speaks of sudden change, " * 12
    chunks = ['{"interpretations": [{"position": 3, "text": "', *text, '"}]}']

    handed = [answer.feed(delta(c)) for c in chunks] + [answer.feed(BLOCK_END)]

    pieces = [piece for got in handed for _, piece in got]
    assert "".join(pieces) == text
    # One parse per PARSE_EVERY_CHARS characters, not one per delta.
    assert len(pieces) <= len(text) // PARSE_EVERY_CHARS + 3
