"""Economy readings: their calls go through Anthropic's Message Batches API, at half price,
in minutes to hours instead of seconds.

The reading's job only starts it (`start`). A django-q2 Schedule (migration
0004_economy_schedule) runs `tick` every minute: it collects the batches that have ended,
runs the standard fallbacks staff chose for expired or errored requests, and submits every
economy reading's due tasks (the unfinished tasks of its current phase) in batches, one per
model, gathered across readings. Each tick is a few HTTP calls and queries, so waiting for a
batch never holds a worker slot.

Never twice: a task is claimed (pending to running) in the transaction that writes its
batch's rows, and the provider's batch id is stored the moment the provider answers; a
restarted worker collects those batches and never submits their tasks again (a database
constraint allows one waiting batch request per task). The one window left is a crash
between the provider's answer and that write: after ORPHAN_AFTER the batch counts as lost
and its tasks are submitted again (README, "Economy readings").
"""

import logging
import statistics
from collections import defaultdict
from datetime import timedelta

import anthropic
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from allocation.allocator import AllocationError
from allocation.calls import InvalidAnswer, request_params
from allocation.client_pool import endpoint, runtime
from allocation.outcomes import CallOutcome
from allocation.pricing import TokenUsage
from allocation.retry_policy import outcome_of_error
from allocation.usage import Attempt
from readings import engine, store, task_runner
from readings.models import (
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderBatch,
    Reading,
    ReadingMode,
    ReadingStatus,
    ReadingTask,
    TaskStatus,
)
from spreads.models import EconomyFallback

logger = logging.getLogger(__name__)

# Anthropic's limits per batch: 100,000 requests and 256 MB; we stay under the size with a
# margin for the JSON around each request.
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
# Due tasks one tick claims at most, so a tick stays short; the rest go in the next one.
MAX_CLAIMED_PER_TICK = 20_000
# A batch the provider refuses for a passing reason (429, 5xx, no connection) is tried this
# many times per task before its reading fails with the provider's message.
SUBMIT_ATTEMPTS = 3
# A batch still "submitting" this long after its rows were written was lost by a worker that
# died mid-request.
ORPHAN_AFTER = timedelta(minutes=10)
# How often the Schedule runs tick(), and how long a batch takes before we have seen one end
# (Anthropic: most batches end within an hour).
POLL_S = 60
DEFAULT_BATCH_S = 3600
STATUS_DETAIL = "queued for batch"

_clients: dict[tuple, anthropic.Anthropic] = {}


def client() -> anthropic.Anthropic:
    """A synchronous client: a tick's few calls need no event loop. No SDK retries: a retried
    create could submit a batch twice."""
    base_url, api_key = endpoint()
    key = (base_url, api_key)
    if key not in _clients:
        _clients[key] = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=anthropic.Timeout(settings.LLM_TIMEOUT_S, connect=5.0),
        )
    return _clients[key]


# --- The reading's job -------------------------------------------------------------------


def start(reading_id) -> Reading:
    """Plan the reading's tasks and mark it running: its first phase is now due. Idempotent,
    so a redelivered job changes nothing (tasks in a batch stay there)."""
    with transaction.atomic():
        reading = Reading.objects.select_for_update().select_related("spread").get(pk=reading_id)
        if reading.status in (ReadingStatus.DONE, ReadingStatus.FAILED):
            return reading
        ReadingTask.objects.bulk_create(store.planned_tasks_of(reading), ignore_conflicts=True)
        reading.status = ReadingStatus.RUNNING
        reading.attempts += 1
        reading.started_at = reading.started_at or timezone.now()
        reading.save(update_fields=["status", "attempts", "started_at"])
    return reading


# --- The Schedule's job ------------------------------------------------------------------


def tick() -> None:
    """Collect, fall back, submit; each step stands alone so one failure skips only itself."""
    close_old_connections()
    for step in (collect, run_fallbacks, submit_due):
        try:
            step()
        except Exception:  # noqa: BLE001 - the next tick retries; every step is idempotent
            logger.exception("economy %s failed", step.__name__)


def _waiting_fallback():
    """A task whose batch request expired or errored is never batched again: staff chose a
    standard call for it (Spread.economy_fallback)."""
    return Exists(
        BatchRequest.objects.filter(
            task=OuterRef("pk"),
            result__in=[BatchResult.ERRORED, BatchResult.EXPIRED, BatchResult.CANCELED],
        )
    )


def due_tasks():
    """Pending tasks of running economy readings whose earlier phases are all done."""
    unfinished_earlier = ReadingTask.objects.filter(
        reading=OuterRef("reading"), phase__lt=OuterRef("phase")
    ).exclude(status=TaskStatus.DONE)
    return ReadingTask.objects.filter(
        status=TaskStatus.PENDING,
        reading__mode=ReadingMode.ECONOMY,
        reading__status=ReadingStatus.RUNNING,
    ).exclude(Q(Exists(unfinished_earlier)) | Q(_waiting_fallback()))


def submit_due() -> list[ProviderBatch]:
    """Submit every due task in batches (one per model, within the API's limits); returns
    the batches the provider accepted."""
    staged = _stage_due()
    accepted = []
    for batch, requests in staged:
        try:
            created = client().messages.batches.create(requests=requests)
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            _rejected(batch, exc)
            continue
        batch.batch_id, batch.status = created.id, BatchStatus.IN_PROGRESS
        batch.submitted_at = timezone.now()
        batch.save(update_fields=["batch_id", "status", "submitted_at"])
        accepted.append(batch)
    return accepted


def _stage_due() -> list[tuple[ProviderBatch, list[dict]]]:
    """Claim the due tasks and write their batches' rows, in one transaction: a task is in a
    batch row before the provider hears of it."""
    with transaction.atomic():
        tasks = list(
            due_tasks()
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("reading__created_at", "phase", "batch_index")[:MAX_CLAIMED_PER_TICK]
        )
        if not tasks:
            return []
        by_model: dict[str, list[tuple[ReadingTask, dict]]] = defaultdict(list)
        by_reading: dict = defaultdict(list)
        for task in tasks:
            by_reading[task.reading_id].append(task)
        for reading_id, reading_tasks in by_reading.items():
            reading = Reading.objects.select_related("spread").get(pk=reading_id)
            try:
                state = store.state_for(reading, economy=True)
            except AllocationError as exc:
                transaction.on_commit(lambda r=reading_id, e=str(exc): store.finish(r, error=e))
                continue
            for task in reading_tasks:
                config = state.configs[task.task_type]
                params = request_params(config.model, task_runner.prompt_for(state, task), config)
                if (answer := task_runner.answer_format(task)) is not None:
                    params.update(answer.request())  # the same answer format as in a run
                by_model[config.model].append((task, params))
        staged = []
        for model, items in by_model.items():
            for chunk in _chunks(items):
                batch = ProviderBatch.objects.create(model=model, request_count=len(chunk))
                requests = []
                for task, params in chunk:
                    tries = task.batch_requests.count() + 1
                    custom_id = f"task-{task.pk}-{tries}"
                    BatchRequest.objects.create(batch=batch, task=task, custom_id=custom_id)
                    requests.append({"custom_id": custom_id, "params": params})
                ReadingTask.objects.filter(pk__in=[t.pk for t, _ in chunk]).update(
                    status=TaskStatus.RUNNING, started_at=timezone.now(), error=""
                )
                staged.append((batch, requests))
    return staged


def _chunks(items: list[tuple[ReadingTask, dict]]):
    chunk, size = [], 0
    for task, params in items:
        length = len(str(params))
        if chunk and (len(chunk) == MAX_BATCH_REQUESTS or size + length > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((task, params))
        size += length
    if chunk:
        yield chunk


def _rejected(batch: ProviderBatch, exc: Exception) -> None:
    """The provider refused the batch whole (or never answered): nothing fails silently.
    A passing refusal puts its tasks back to be submitted again (SUBMIT_ATTEMPTS in all);
    any other fails their readings with the provider's message."""
    message = _provider_message(exc)
    status = getattr(exc, "status_code", None)
    passing = status is None or status == 429 or status >= 500
    logger.warning(
        "batch of %s requests on %s refused: %s", batch.request_count, batch.model, message
    )
    readings = set()
    with transaction.atomic():
        ProviderBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.REJECTED, error=message)
        for request in batch.requests.select_related("task"):
            request.result, request.error = BatchResult.REJECTED, message
            request.recorded_at = timezone.now()
            request.save(update_fields=["result", "error", "recorded_at"])
            task = request.task
            tries = task.batch_requests.count()
            if passing and tries < SUBMIT_ATTEMPTS:
                ReadingTask.objects.filter(pk=task.pk).update(status=TaskStatus.PENDING)
            else:
                store.fail_task(
                    task.pk,
                    error=f"{task}: the provider refused its batch: {message}",
                    attempts=task.attempts,
                    reading_id=task.reading_id,
                )
                readings.add(task.reading_id)
    for reading_id in readings:
        advance(reading_id)


def _provider_message(exc: Exception) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = (body.get("error") or {}).get("message") or str(exc)
        return f"{exc.status_code} {detail}"
    return f"{type(exc).__name__}: {exc}"


def collect() -> int:
    """Store the results of every batch that has ended; returns how many batches ended.
    A result is stored once (its request row is marked in the same transaction), so two
    collectors, or a collector restarted halfway, store each exactly once."""
    _give_up_orphans()
    ended = 0
    for batch in ProviderBatch.objects.filter(status=BatchStatus.IN_PROGRESS).order_by(
        "submitted_at"
    ):
        try:
            remote = client().messages.batches.retrieve(batch.batch_id)
        except anthropic.NotFoundError as exc:
            _rejected(batch, exc)  # the provider no longer knows it: submit its tasks again
            continue
        except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            logger.warning("batch %s could not be retrieved: %s", batch.batch_id, exc)
            continue
        if remote.processing_status != "ended":
            continue
        batch.ended_at = remote.ended_at or timezone.now()
        for result in client().messages.batches.results(batch.batch_id):
            _store_result(batch, result)
        ProviderBatch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.ENDED, ended_at=batch.ended_at
        )
        for reading_id in set(batch.requests.values_list("task__reading_id", flat=True)):
            advance(reading_id)
        ended += 1
    return ended


def _give_up_orphans() -> None:
    lost = ProviderBatch.objects.filter(
        status=BatchStatus.SUBMITTING, created_at__lt=timezone.now() - ORPHAN_AFTER
    )
    for batch in lost:
        _rejected(batch, RuntimeError("the worker stopped while submitting this batch"))


def _store_result(batch: ProviderBatch, result) -> None:
    with transaction.atomic():
        request = (
            BatchRequest.objects.select_for_update()
            .select_related("task__reading__spread")
            .filter(batch=batch, custom_id=result.custom_id, result=BatchResult.WAITING)
            .first()
        )
        if request is None:
            return  # stored by an earlier collector
        task, reading = request.task, request.task.reading
        kind = result.result.type
        attempt = dict(
            task_type=task.task_type,
            requested_model=batch.model,
            model=batch.model,
            attempt=task.attempts + 1,
            is_retry=task.attempts > 0,
            is_fallback=False,
            latency_s=(batch.ended_at - batch.submitted_at).total_seconds(),
            started_at=batch.submitted_at,
        )
        log = dict(
            reading_id=reading.pk,
            task_id=task.pk,
            spread_id=reading.spread_id,
            settle=reading.reservations.exists(),
        )
        invalid = ""
        if kind == "succeeded":
            message = result.result.message
            texts = {}
            if (answer := task_runner.answer_format(task)) is not None:
                try:
                    texts = answer.result(message)
                except InvalidAnswer as exc:
                    invalid = str(exc)  # paid for, but no text for any card: as an error
            text, texts = task_runner.task_texts(
                task,
                text="".join(b.text for b in message.content if b.type == "text"),
                texts=texts,
                names={p.index: p.name for p in reading.spread.positions.all()},
            )
            store.record_attempt(
                Attempt(
                    **attempt,
                    outcome=CallOutcome.ERROR if invalid else CallOutcome.OK,
                    usage=TokenUsage.from_anthropic(message.usage, batched=True),
                    status_code=200,
                    request_id=message.id,
                    error=invalid,
                ),
                **log,
            )
            if not invalid:
                store.finish_task(
                    task.pk,
                    output=text,
                    texts=texts,
                    model=batch.model,
                    attempts=task.attempts + 1,
                    reading_id=reading.pk,
                )
        if kind != "succeeded" or invalid:
            error = invalid or _result_error(result.result)
            if not invalid:
                problem = CallOutcome.TIMEOUT if kind == "expired" else CallOutcome.ERROR
                if kind == "errored":
                    problem = outcome_of_error(result.result.error.error.type)
                store.record_attempt(
                    Attempt(
                        **attempt, outcome=problem, usage=TokenUsage(batched=True), error=error
                    ),
                    **log,
                )
            if reading.spread.economy_fallback == EconomyFallback.FAIL:
                store.fail_task(
                    task.pk,
                    error=f"{task}: batch request {error}",
                    attempts=task.attempts + 1,
                    reading_id=reading.pk,
                )
            else:  # a standard call in run_fallbacks(), this tick
                ReadingTask.objects.filter(pk=task.pk).update(
                    status=TaskStatus.PENDING, attempts=task.attempts + 1
                )
        request.result = kind if kind in BatchResult.values else BatchResult.ERRORED
        if invalid:
            request.result = BatchResult.ERRORED
        request.error = "" if kind == "succeeded" and not invalid else error
        request.recorded_at = timezone.now()
        request.save(update_fields=["result", "error", "recorded_at"])


def _result_error(result) -> str:
    if result.type == "errored":
        error = result.error.error
        return f"errored: {error.type}: {error.message}"
    return result.type  # expired or canceled: the provider says no more


def run_fallbacks() -> int:
    """Standard calls for the tasks whose batch request expired or errored (staff chose
    that fallback); returns how many were run."""
    # A fallback still running after the worker's timeout died with its tick: run it again.
    ReadingTask.objects.filter(
        _waiting_fallback(),
        status=TaskStatus.RUNNING,
        started_at__lt=timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"]),
    ).exclude(batch_requests__result=BatchResult.WAITING).update(status=TaskStatus.PENDING)
    waiting = ReadingTask.objects.filter(
        _waiting_fallback(),
        status=TaskStatus.PENDING,
        reading__mode=ReadingMode.ECONOMY,
        reading__status=ReadingStatus.RUNNING,
    )
    by_reading: dict = defaultdict(list)
    for task_id, reading_id in waiting.values_list("pk", "reading_id"):
        by_reading[reading_id].append(task_id)
    for reading_id, task_ids in by_reading.items():
        reading = Reading.objects.select_related("spread").get(pk=reading_id)
        state = store.state_for(reading, economy=True)
        tasks = [t for t in state.tasks if t.pk in task_ids]
        runtime.run(engine.run_tasks(state, tasks))
        advance(reading_id)
    return sum(len(ids) for ids in by_reading.values())


def advance(reading_id) -> None:
    """End the reading when every task is done, or when one has failed; else its next phase
    is due and the next submit_due() takes it."""
    with transaction.atomic():
        reading = (
            Reading.objects.select_for_update()
            .filter(pk=reading_id, status=ReadingStatus.RUNNING)
            .first()
        )
        if reading is None:
            return
        tasks = list(reading.tasks.all())
        failed = [t for t in tasks if t.status == TaskStatus.FAILED]
        if not failed and any(t.status != TaskStatus.DONE for t in tasks):
            return
        store.finish(reading_id, error=failed[0].error if failed else "", timings=_timings(reading))


def _timings(reading: Reading) -> dict:
    """A reading's metrics from its calls: the batches' waits count as their latency."""
    latencies = list(reading.llm_calls.values_list("task__phase", "latency_s"))
    slowest: dict[int, float] = defaultdict(float)
    for phase, latency in latencies:
        slowest[phase] = max(slowest[phase], latency or 0.0)
    sequential = sum(latency or 0.0 for _, latency in latencies)
    wall = (timezone.now() - reading.started_at).total_seconds() if reading.started_at else 0.0
    return {
        "wall_time_s": wall,
        "sequential_s": sequential,
        "time_saved_s": sequential - wall,
        "critical_path_s": sum(slowest.values()),
    }


# --- What the API shows ------------------------------------------------------------------


def typical_batch_s() -> float:
    """The median time of the last 20 batches from submission to end; an hour before any."""
    recent = ProviderBatch.objects.filter(
        status=BatchStatus.ENDED, submitted_at__isnull=False, ended_at__isnull=False
    ).order_by("-ended_at")[:20]
    seconds = [(b.ended_at - b.submitted_at).total_seconds() for b in recent]
    return statistics.median(seconds) if seconds else DEFAULT_BATCH_S


def expected_ready_at(reading: Reading):
    """When an unfinished economy reading should be done: each phase left takes a typical
    batch plus a tick's wait, from its current batch's submission (or the next tick)."""
    if reading.mode != ReadingMode.ECONOMY or reading.status in (
        ReadingStatus.DONE,
        ReadingStatus.FAILED,
    ):
        return None
    tasks = list(reading.tasks.all())
    phases_left = len({t.phase for t in tasks if t.status != TaskStatus.DONE}) or 3
    now = timezone.now()
    submitted = (
        ProviderBatch.objects.filter(
            requests__task__reading=reading,
            requests__result=BatchResult.WAITING,
            status=BatchStatus.IN_PROGRESS,
        )
        .order_by("submitted_at")
        .values_list("submitted_at", flat=True)
        .first()
    )
    begins = submitted or now + timedelta(seconds=POLL_S)
    per_phase = timedelta(seconds=typical_batch_s() + POLL_S)
    return max(now, begins + per_phase * phases_left - timedelta(seconds=POLL_S))
