"""`bench --stream`: readings through the REST API and real workers, each followed by an
SSE client on GET /api/readings/<id>/events/ served by uvicorn, as an app would.

Figures: first_text_ms (from the moment the reading's first card task's request leaves the
worker, its LLMCall.started_at, to the first text delta the client receives) and
events_lost (text deltas the client never received, and texts whose deltas do not add up to
the saved text).
"""

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import httpx2
from rest_framework.authtoken.models import Token

from allocation.models import LLMCall
from benchmarks.bench import BenchConfig, BenchResult, percentile
from benchmarks.workers import WebServer, WorkerCluster
from readings.models import EventKind, Reading, ReadingEvent, ReadingTask
from spreads.models import TaskType


@dataclass
class Followed:
    """What one SSE client saw of one reading."""

    reading_id: str
    ids: set[int] = field(default_factory=set)
    first_text_at: float | None = None  # Unix time
    # (task, position) -> text since the task last (re)started
    texts: dict[tuple[int, str], str] = field(default_factory=dict)
    finished: dict | None = None


async def read_events(response):
    """(id, event, data) for each event of an SSE response."""
    event_id, kind, data = None, "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event_id, kind, json.loads("\n".join(data))
            event_id, kind, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = int(value)
            elif name == "event":
                kind = value
            elif name == "data":
                data.append(value)


def follow_event(seen: Followed, event_id, kind: str, data: dict) -> bool:
    """Apply one event to what the client shows; True at the end of the reading."""
    if event_id is not None:
        seen.ids.add(event_id)
    if kind in (EventKind.TASK_STARTED, EventKind.TASK_RESTARTED):
        for key in [k for k in seen.texts if k[0] == data["task"]]:
            del seen.texts[key]
    elif kind == EventKind.TEXT:
        if seen.first_text_at is None:
            seen.first_text_at = time.time()
        key = (data["task"], str(data["position"]))
        seen.texts[key] = seen.texts.get(key, "") + data["text"]
    elif kind == EventKind.READING_FINISHED:
        seen.finished = data
        return True
    return False


async def _one_reading(http: httpx2.AsyncClient, config: BenchConfig) -> Followed:
    created = await http.post(
        "/api/readings/", json={"spread": config.spread, "question": config.question}
    )
    if created.status_code != 202:
        raise RuntimeError(f"creating a reading failed: {created.text[:300]}")
    seen = Followed(reading_id=created.json()["id"])
    async with http.stream(
        "GET",
        f"/api/readings/{seen.reading_id}/events/",
        headers={"Accept": "text/event-stream"},
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"the event stream answered {response.status_code}")
        async for event_id, kind, data in read_events(response):
            if follow_event(seen, event_id, kind, data):
                break
    return seen


def events_lost(seen: Followed) -> int:
    """Deltas stored for the reading that the client never received, plus texts where what
    it received differs from what was saved."""
    stored = ReadingEvent.objects.filter(reading_id=seen.reading_id, kind=EventKind.TEXT)
    lost = stored.exclude(id__in=seen.ids).count()
    for task in ReadingTask.objects.filter(reading_id=seen.reading_id):
        saved = (
            {str(i): text for i, text in task.texts.items()}
            if task.task_type == TaskType.CARD_INTERPRETATION
            else {"None": task.output}
        )
        for position, text in saved.items():
            if seen.texts.get((task.pk, position), "").strip() != text.strip():
                lost += 1
    return lost


def first_text_ms(seen: Followed) -> float | None:
    sent = (
        LLMCall.objects.filter(reading_id=seen.reading_id, task_type=TaskType.CARD_INTERPRETATION)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    if sent is None or seen.first_text_at is None:
        return None
    return (seen.first_text_at - sent.timestamp()) * 1000


def run_streaming(config: BenchConfig, progress, *, base_url: str) -> tuple[BenchResult, dict]:
    from benchmarks.service_bench import bench_user

    user = bench_user()
    token, _ = Token.objects.get_or_create(user=user)
    result = BenchResult(wall_s=0.0)
    followed: list[Followed] = []

    async def clients():
        done = 0
        gate = asyncio.Semaphore(config.concurrency)
        async with httpx2.AsyncClient(
            base_url=web.url,
            headers={"Authorization": f"Token {token.key}"},
            timeout=httpx2.Timeout(120.0, connect=5.0),
        ) as http:

            async def one():
                nonlocal done
                async with gate:
                    started = time.monotonic()
                    seen = await _one_reading(http, config)
                    result.e2e_s.append(time.monotonic() - started)
                    followed.append(seen)
                    done += 1
                    progress(done, config.readings)

            await asyncio.gather(*(one() for _ in range(config.readings)))

    cluster = WorkerCluster(workers=config.concurrency, base_url=base_url)
    web = WebServer()
    try:
        web.wait_until_ready()
        cluster.wait_until_ready()
        started = time.monotonic()
        asyncio.run(clients())
        result.wall_s = time.monotonic() - started
    finally:
        cluster.stop()
        web.stop()
    result.reading_ids = [seen.reading_id for seen in followed]
    result.queue_delay_s = [
        (r.started_at - r.created_at).total_seconds()
        for r in Reading.objects.filter(pk__in=result.reading_ids, started_at__isnull=False)
    ]
    firsts = [ms for ms in map(first_text_ms, followed) if ms is not None]
    extra = {
        "events_lost": sum(events_lost(seen) for seen in followed),
        "first_text_ms_p50": round(statistics.median(firsts), 1) if firsts else None,
        "first_text_ms_p95": round(percentile(firsts, 0.95), 1) if firsts else None,
        "streams_without_text": len(followed) - len(firsts),
    }
    return result, extra
