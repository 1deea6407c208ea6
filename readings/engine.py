"""The parallel reading engine.

Phase 1 interprets every card batch at once; phase 2 writes the overall reading and the
relationships at once; phase 3 gives advice. At most the spread's max_concurrent_calls LLM
calls are in flight for one reading (one at a time when the spread does not support
parallel calls). Each task is saved the moment it finishes, so a redelivered job resumes.
"""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from allocation.allocator import AllocationError
from allocation.calls import TaskFailed, complete
from allocation.client_pool import runtime
from allocation.limiter import CallOrder, LogRow, Permit, get_limiter
from allocation.models import CallOutcome
from allocation.usage import Attempt
from readings import budgeting, live, store, task_runner
from readings.guide_writers import guide_writers
from readings.models import EventKind, Reading, ReadingTask, TaskStatus
from spreads import prompts
from spreads.prompt_sandbox import RenderBudgetExceeded

logger = logging.getLogger(__name__)

LAST_PHASE = 3
# A reading dispatched later than this after it was asked for was held back by the fair queue.
HELD_BACK = timedelta(seconds=2)


# progress(task, status) is called as each task starts and ends (the `read` command's bar).
Progress = Callable[[ReadingTask, str], None]


class CallTracker:
    """The per-reading bound on concurrent calls, inside the global limiter, and what it saw."""

    def __init__(self, limit: int, *, use_global_limiter: bool):
        self._semaphore = asyncio.Semaphore(limit)
        self._use_global_limiter = use_global_limiter
        self.in_flight = 0
        self.peak = 0

    @asynccontextmanager
    async def slot(
        self,
        model: str,
        input_estimate: int,
        max_tokens: int = 0,
        *,
        order: CallOrder | None = None,
        log_row: LogRow | None = None,
    ):
        async with self._semaphore:
            if self._use_global_limiter:
                permits = get_limiter().permit(
                    model,
                    input_estimate=input_estimate,
                    max_tokens=max_tokens,
                    order=order,
                    log_row=log_row,
                )
            else:
                permits = nullcontext(Permit())
            async with permits as permit:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                try:
                    yield permit
                finally:
                    self.in_flight -= 1


@dataclass
class RunTimings:
    """Call time per task for this run, to compute the reading's metrics."""

    started: float = field(default_factory=time.monotonic)
    call_seconds: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    phase_of: dict[int, int] = field(default_factory=dict)

    def as_metrics(self, peak: int) -> dict:
        wall = time.monotonic() - self.started
        sequential = sum(self.call_seconds.values())
        slowest_per_phase: dict[int, float] = defaultdict(float)
        for task_id, seconds in self.call_seconds.items():
            phase = self.phase_of[task_id]
            slowest_per_phase[phase] = max(slowest_per_phase[phase], seconds)
        return {
            "wall_time_s": wall,
            "sequential_s": sequential,
            "time_saved_s": sequential - wall,
            "critical_path_s": sum(slowest_per_phase.values()),
            "peak_concurrent_calls": peak,
        }


class ReadingRun:
    def __init__(self, state: store.ReadingState, progress: Progress | None = None):
        self.state = state
        self.progress = progress or (lambda task, status: None)
        parallel = state.spread.supports_parallel
        self.tracker = CallTracker(
            state.max_concurrent_calls if parallel else 1,
            use_global_limiter=settings.LLM_GLOBAL_LIMITER,
        )
        self.timings = RunTimings()
        # What the reading's viewers see of its text as it streams (readings/live.py).
        self.events = live.ReadingPublisher(state.reading.pk)

    async def run(self) -> None:
        tasks = self.state.tasks
        for phase in (1, 2, 3):
            todo = [t for t in tasks if t.phase == phase and t.status != TaskStatus.DONE]
            if not todo:
                continue
            await self.claim_budget(todo)
            if self.state.spread.supports_parallel:
                outcomes = await self.run_together(todo)
            else:
                outcomes = []
                for task in todo:
                    # One at a time: a task after a failed one is never marked running.
                    if not await sync_to_async(store.claim_tasks)([task.pk]):
                        continue
                    try:
                        outcomes.append(await self.run_task(task))
                    except TaskFailed as exc:
                        outcomes.append(exc)
                        break
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

    async def claim_budget(self, tasks: list[ReadingTask]) -> None:
        """Before a phase starts: claim what its calls could spend at worst on the reading's
        budgets, waiting (as waiting_for_budget) until they have room."""
        if not self.state.has_reservations or self.state.economy:
            return
        worst = budgeting.step_worst(self.state.cost_estimate, tasks, self.state.tasks)
        if worst is None:
            return
        reading_id = self.state.reading.pk
        pause = settings.BUDGET_WAIT_POLL_S
        waiting = False
        while not await sync_to_async(store.hold_step)(reading_id, worst, waiting=waiting):
            waiting = True
            await asyncio.sleep(pause)
            # Money comes back as other readings settle, within seconds; a wait for the
            # next period may last hours, and need not ask every few seconds.
            pause = min(pause * 1.5, MAX_BUDGET_POLL_S)

    async def run_together(self, tasks: list[ReadingTask]) -> list:
        """Claim `tasks` in one statement and run those claimed side by side; the outcome of
        each (a TaskFailed for a failed one)."""
        claimed = await sync_to_async(store.claim_tasks)([t.pk for t in tasks])
        return await asyncio.gather(
            *(self.run_task(t) for t in tasks if t.pk in claimed), return_exceptions=True
        )

    async def run_task(self, task: ReadingTask) -> None:
        """Run a task this run has claimed (store.claim_tasks)."""
        reading_id = self.state.reading.pk
        announce = {
            "task": task.pk,
            "task_type": task.task_type,
            "phase": task.phase,
            "positions": task.position_indexes,
        }
        # Viewers hear of it with the reading's next write, within live.FLUSH_INTERVAL_S.
        self.events.add(EventKind.TASK_STARTED, announce)
        self.timings.phase_of[task.pk] = task.phase
        self.progress(task, TaskStatus.RUNNING)
        attempts = 0
        text = self.events.for_task(task.pk)
        answer = task_runner.answer_format(task)

        answered_by: Attempt | None = None
        # Whom a call of this task is logged against.
        ids = {"reading_id": reading_id, "task_id": task.pk, "spread_id": self.state.spread.pk}

        async def on_attempt(attempt: Attempt):
            nonlocal attempts, answered_by
            attempts += 1
            self.timings.call_seconds[task.pk] += attempt.latency_s
            if attempt.outcome == CallOutcome.OK:
                # Logged with the task's answer, in one transaction (store.finish_task): a
                # worker killed in between must not leave a paid answer its task never got.
                answered_by = attempt
                await text.flush()
                return
            await sync_to_async(store.record_attempt)(
                attempt, **ids, settle=self.state.has_reservations
            )
            await text.attempt_failed(f"{attempt.model}: {attempt.outcome}")

        async def on_send(attempt: Attempt) -> int:
            return await sync_to_async(store.open_attempt)(attempt, **ids)

        def opening(attempt: Attempt) -> tuple[str, list]:
            return store.opening_attempt(attempt, **ids)

        config = self.state.configs[task.task_type]
        try:
            try:
                # On a thread of its own: a template slow up to its time budget delays only
                # its own task, not the other readings' saves queued on the database thread,
                # which reads staff's templates for it when they are due.
                if not prompts.stored_templates_fresh():
                    await sync_to_async(prompts.read_stored_templates)()
                prompt = await asyncio.get_running_loop().run_in_executor(
                    _renderers, _prompt_for, self.state, task
                )
            except RenderBudgetExceeded as exc:
                raise TaskFailed(f"invalid prompt: {exc}") from exc
            # A cold guide is written once, then read (readings/guide_writers.py).
            async with guide_writers.turn(config.model, prompt):
                completion = await complete(
                    prompt=prompt,
                    config=config,
                    on_send=on_send,
                    opening=opening,
                    # Among the calls waiting for the model: finish what was started.
                    gate=partial(self.tracker.slot, order=self._order(task)),
                    on_attempt=on_attempt,
                    answer=answer,
                    on_text=text.add,
                )
        except TaskFailed as exc:
            error = f"{task}: {exc}"
            await self.events.flush()  # its task_started, before its end
            await sync_to_async(store.fail_task)(
                task.pk, error=error, attempts=attempts, reading_id=reading_id
            )
            task.status = TaskStatus.FAILED
            self.progress(task, TaskStatus.FAILED)
            raise TaskFailed(error) from exc
        output, texts = task_runner.task_texts(
            task,
            text=completion.text,
            texts=completion.result if answer is not None else {},
            names={c.position.index: c.position.name for c in self.state.cards},
        )
        await sync_to_async(store.finish_task)(
            task.pk,
            output=output,
            model=completion.model,
            attempts=attempts,
            texts=texts,
            reading_id=reading_id,
            answered_by=answered_by,
            spread_id=self.state.spread.pk,
            settle=self.state.has_reservations,
        )
        task.status, task.output, task.model_used, task.texts = (
            TaskStatus.DONE,
            output,
            completion.model,
            texts,
        )
        self.progress(task, TaskStatus.DONE)

    def _order(self, task: ReadingTask) -> CallOrder:
        """The reading is the job: it arrived when it was asked for, and was let in when the
        fair queue let it through, if the queue held it back; never when a worker happened
        to start it (workers start a burst's readings in no particular order)."""
        reading = self.state.reading
        held_back = reading.dispatched_at and reading.dispatched_at - reading.created_at > HELD_BACK
        return CallOrder(
            job=reading.pk,
            arrived_at=reading.created_at.timestamp(),
            stages_left=LAST_PHASE - task.phase + 1,
            let_in_at=reading.dispatched_at.timestamp() if held_back else None,
        )


# The longest a reading waiting for budget goes without asking again.
MAX_BUDGET_POLL_S = 30


# Readings set up (store.begin) at most this many at a time per event loop. Database work
# from the loop runs on one thread, first come first served: a burst of new readings would
# otherwise queue dozens of set-ups in front of the calls of readings already running.
STARTING_AT_ONCE = 2
_starting: dict[int, asyncio.Semaphore] = {}


# Plain threads (not asgiref's, which carry the caller's context and with it its database
# connections), so what a render opens is this thread's own, and closed below.
_renderers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prompt-render")


def _prompt_for(state: store.ReadingState, task: ReadingTask):
    try:
        return task_runner.prompt_for(state, task)
    finally:
        # Staff's templates are read afresh now and then (allocation/staff_config.py): the
        # connection that took goes back to the pool instead of staying with this thread.
        connections.close_all()


def _starting_gate() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _starting.get(id(loop))
    if gate is None:
        gate = _starting[id(loop)] = asyncio.Semaphore(STARTING_AT_ONCE)
    return gate


async def run_reading(reading_id, progress: Progress | None = None) -> Reading:
    """Run (or resume) a reading to the end; returns it, done or failed with a clear error."""
    try:
        async with _starting_gate():
            state = await sync_to_async(store.begin)(reading_id)
    except AllocationError as exc:
        return await sync_to_async(store.finish)(reading_id, error=str(exc))
    if state is None:
        return await Reading.objects.aget(pk=reading_id)
    reading_run = ReadingRun(state, progress)
    error = ""
    try:
        await reading_run.run()
    except TaskFailed as exc:
        error = str(exc)
        logger.warning("reading %s failed: %s", reading_id, error)
    except Exception as exc:  # noqa: BLE001 - a bug must fail the reading, not leave it running
        logger.exception("reading %s failed unexpectedly", reading_id)
        error = f"Unexpected error ({type(exc).__name__}): {exc}"
    metrics = reading_run.timings.as_metrics(reading_run.tracker.peak)
    await reading_run.events.flush()  # nothing is written after the reading's end
    return await sync_to_async(store.finish)(
        reading_id, error=error, timings=metrics, has_reservations=state.has_reservations
    )


def run_reading_sync(reading_id, progress: Progress | None = None) -> Reading:
    """Entry point for sync code (the worker task, commands): runs on the process's LLM
    runtime loop so pooled connections are reused across readings."""
    return runtime.run(run_reading(reading_id, progress))


# --- For economy readings (readings/economy.py): the same task runs, outside a reading's
# job.


async def run_tasks(state: store.ReadingState, tasks: list[ReadingTask]) -> None:
    """Run pending `tasks` now as standard calls (an economy reading's fallback); each is
    saved done or failed, as in a reading's run."""
    reading_run = ReadingRun(state)
    await reading_run.run_together(tasks)
    await reading_run.events.flush()
