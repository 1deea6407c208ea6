"""Where the engine meets the database: the only module it reaches readings, tasks and the
usage log through (the limiter keeps its own shared state, see allocation/limiter/).

Functions here are synchronous; the engine calls them with sync_to_async. Each write is a
small, conditional update so that a redelivered job resumes where the last one stopped and
never runs (or pays for) a finished task again.
"""

import json
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, DecimalField, Exists, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from allocation.allocator import AllocationConfig, get_allocator
from allocation.models import CallOutcome, LLMCall
from allocation.prompt import estimate_tokens
from allocation.usage import Attempt, completing_pending, open_call, opening, record_call
from budgets.models import CostEstimate, Reservation
from budgets.services import BudgetExceeded, hold_for_step, release_reading, settle_call
from config.db_messages import roll_back
from readings import live
from readings.models import EventKind, Reading, ReadingStatus, ReadingTask, TaskStatus
from readings.signals import reading_ended
from spreads.models import Spread, TaskType
from spreads.planning import plan_tasks
from spreads.prompt_caching import PlannedCall, cache_ttls, guide_steps
from spreads.prompts import (
    DrawnCard,
    Prompt,
    PromptContext,
    build_prompt,
    render_guide,
    template_names,
)


@dataclass
class ReadingState:
    reading: Reading
    spread: Spread
    cards: list[DrawnCard]
    tasks: list[ReadingTask]
    configs: dict[str, AllocationConfig] = field(default_factory=dict)
    # template of each shared prompt part and of each task kind (spreads.prompts)
    templates: dict[str, str] = field(default_factory=dict)
    max_concurrent_calls: int = 1
    # Whether the reading holds budget reservations its calls must settle against, and the
    # estimate its phases' claims are taken from (readings/budgeting.py).
    has_reservations: bool = False
    cost_estimate: CostEstimate | None = None
    economy: bool = False
    # The shared prompt parts once rendered: the same bytes for every call of the reading.
    rendered_parts: dict[str, str] = field(default_factory=dict)

    def planned_calls(self) -> list[PlannedCall]:
        phases = {t.task_type: t.phase for t in self.tasks}
        return [
            PlannedCall(task_type, phases[task_type], config.model, config.cache_ttl)
            for task_type, config in self.configs.items()
            if task_type in phases
        ]


def begin(reading_id) -> ReadingState | None:
    """Take the reading for this run; None if it is already done."""
    close_old_connections()
    with transaction.atomic():
        reading = (
            Reading.objects.select_for_update(of=("self",))
            .select_related("spread")
            .annotate(has_reservations=Exists(Reservation.objects.filter(reading=OuterRef("pk"))))
            .get(pk=reading_id)
        )
        if reading.status == ReadingStatus.DONE:
            return None
        planned_tasks = planned_tasks_of(reading)
        if reading.attempts == 0:
            # Its first run: no task to take back, and its tasks are made now, as planned.
            tasks = ReadingTask.objects.bulk_create(planned_tasks)
        else:
            _take_back_abandoned_tasks(reading)
            ReadingTask.objects.bulk_create(planned_tasks, ignore_conflicts=True)
            tasks = None
        reading.status = ReadingStatus.RUNNING
        reading.attempts += 1
        reading.started_at = reading.started_at or timezone.now()
        reading.error = ""
        reading.save(update_fields=["status", "attempts", "started_at", "error"])

    return state_for(reading, tasks=tasks, has_reservations=reading.has_reservations)


def planned_tasks_of(reading: Reading) -> list[ReadingTask]:
    """The reading's tasks as its spread plans them, unsaved."""
    spread = reading.spread
    return [
        ReadingTask(
            reading=reading,
            task_type=planned.task_type,
            phase=planned.phase,
            batch_index=planned.batch_index,
            position_indexes=list(planned.position_indexes),
        )
        for planned in plan_tasks(spread.card_count, spread.batch_size)
    ]


def _take_back_abandoned_tasks(reading: Reading) -> None:
    # Only one run of a reading's job is alive at a time (the worker's timeout is below its
    # retry, and recovery hands back only a dead worker's job), so a task still marked
    # running now was abandoned by a worker that died.
    abandoned = reading.tasks.filter(status__in=[TaskStatus.RUNNING, TaskStatus.FAILED])
    restarted = list(abandoned.values_list("pk", flat=True))
    if not restarted:
        return
    ReadingTask.objects.filter(pk__in=restarted).update(status=TaskStatus.PENDING, error="")
    # Viewers drop whatever text those tasks had shown: they run again from the start.
    live.publish(
        reading.pk,
        [(EventKind.TASK_RESTARTED, {"task": pk, "reason": "resumed"}) for pk in restarted],
    )


def claim_tasks(task_ids: list) -> set:
    """The tasks this run got, of those asked for: not those done or held by another run.
    A phase's tasks are claimed together, in one statement, as the phase starts."""
    now = timezone.now()
    pending = ReadingTask.objects.filter(pk__in=task_ids, status=TaskStatus.PENDING)
    if pending.update(status=TaskStatus.RUNNING, started_at=now, error="") == len(task_ids):
        return set(task_ids)
    # Some were done, or held by another run: this run's are those it stamped just now.
    return set(
        ReadingTask.objects.filter(
            pk__in=task_ids, status=TaskStatus.RUNNING, started_at=now
        ).values_list("pk", flat=True)
    )


def render(state: ReadingState, task_type: str, context: PromptContext, *, cached=True) -> Prompt:
    """The task's prompt, with cache breakpoints where a later call can read them (unless
    prompt caching is off: LLM_PROMPT_CACHING, or cached=False)."""
    calls = state.planned_calls()
    call = next(c for c in calls if c.task_type == task_type)
    steps = guide_steps(
        call,
        calls,
        guide_tokens=lambda steps: estimate_tokens(
            render_guide(state.templates, context, steps, state.rendered_parts)
        ),
    )
    ttls = {}
    if cached:
        ttls = cache_ttls(
            call,
            calls,
            guide_ttl=state.spread.guide_cache_ttl,
            reading_ttl=state.spread.reading_cache_ttl,
            economy=state.economy,
            enabled=settings.LLM_PROMPT_CACHING,
        )
    return build_prompt(
        state.templates,
        TaskType(task_type).kind,
        context,
        later_phase=task_type != TaskType.CARD_INTERPRETATION,
        cache_ttls=ttls,
        rendered=state.rendered_parts,
        guide_steps=steps,
    )


def hold_step(reading_id, worst_usd: Decimal, *, waiting: bool) -> bool:
    """Claim the reading's next phase's worst case on its budgets. If one has no room now,
    the reading is marked waiting for budget (its viewers told) and this says False; once the
    claim goes through, a waiting reading is running again."""
    try:
        hold_for_step(reading_id, worst_usd)
    except BudgetExceeded as exc:
        if not waiting:
            _set_status(reading_id, ReadingStatus.WAITING_FOR_BUDGET, detail=str(exc))
        return False
    if waiting:
        _set_status(reading_id, ReadingStatus.RUNNING)
    return True


def _set_status(reading_id, status: str, detail: str = "") -> None:
    with transaction.atomic():
        Reading.objects.filter(pk=reading_id).update(status=status)
        live.publish(reading_id, [(EventKind.STATUS, {"status": status, "detail": detail})])


def open_attempt(attempt: Attempt, *, reading_id, task_id, spread_id) -> int:
    """The call's log row, pending, written as the request leaves: if this worker dies before
    the answer, recovery books it as lost (worker/recovery.py)."""
    return open_call(attempt, reading_id=reading_id, task_id=task_id, spread_id=spread_id)


def opening_attempt(attempt: Attempt, *, reading_id, task_id, spread_id) -> tuple[str, list]:
    """open_attempt as a statement for the limiter to run in the transaction that admits the
    call, saving it a round trip and a commit of its own."""
    return opening(attempt, reading_id=reading_id, task_id=task_id, spread_id=spread_id)


def record_attempt(attempt: Attempt, *, reading_id, task_id, spread_id, settle=False) -> None:
    """Log the call and, for a reading with budget reservations, settle its cost against
    them in the same transaction, so a worker killed in between neither loses the spend nor
    counts it twice on resuming."""
    if not settle:
        record_call(attempt, reading_id=reading_id, task_id=task_id, spread_id=spread_id)
        return
    with transaction.atomic():
        call = record_call(attempt, reading_id=reading_id, task_id=task_id, spread_id=spread_id)
        settle_call(reading_id=reading_id, cost_usd=call.unsettled_usd)


def finish_task(
    task_id,
    *,
    output: str,
    model: str,
    attempts: int,
    texts: dict | None = None,
    reading_id=None,
    answered_by: Attempt | None = None,
    spread_id=None,
    settle: bool = False,
) -> None:
    """Save the task's answer, with the call that answered it (`answered_by`) logged in the
    same transaction: a worker killed in between leaves neither, so the resumed task is sent
    again and its first request is booked as lost, never a paid answer with no task done.
    With reading_id, tell its viewers the final text too."""
    done = {
        "status": TaskStatus.DONE,
        "output": output,
        "texts": texts or {},
        "model_used": model,
        "attempts": attempts,
        "finished_at": timezone.now(),
    }
    finished = {"task": task_id, "status": TaskStatus.DONE}
    if texts:
        finished["texts"] = {str(i): text for i, text in texts.items()}
    else:
        finished["text"] = output
    events = [(EventKind.TASK_FINISHED, finished)] if reading_id is not None else []
    # Settling against budgets takes the ledgers' locks: that is the ORM's way, below.
    usual = answered_by is not None and not settle
    if usual and _finished_in_one_message(task_id, done, answered_by, reading_id, events):
        return
    with transaction.atomic():
        if answered_by is not None:
            record_attempt(
                answered_by,
                reading_id=reading_id,
                task_id=task_id,
                spread_id=spread_id,
                settle=settle,
            )
        ReadingTask.objects.filter(pk=task_id).update(**done, cost_usd=_task_cost(task_id))
        if events:
            live.publish(reading_id, events)


def _finished_in_one_message(task_id, done: dict, answered_by: Attempt, reading_id, events):
    """finish_task's usual case on Postgres, in one message to the server and its commit:
    the answering call's pending row completed, the task saved with what its calls cost,
    its viewers told. A task ends several times a reading; through the ORM that was five
    round trips and an eighth of the worker's time. False, with nothing written, if the
    usual case does not apply (in a caller's transaction; the call's row not pending)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if answered_by.call_id is None:
        return False
    call_sql, call_params = completing_pending(answered_by)
    statements = ["BEGIN", call_sql, SAVE_DONE]
    params = [
        *call_params,
        *(done[name] for name in ("status", "output")),
        json.dumps(done["texts"]),
        *(done[name] for name in ("model_used", "attempts", "finished_at")),
        task_id,
        task_id,
    ]
    if events:
        publish_sql, publish_params = live.publishing([(reading_id, events)])
        statements.append(publish_sql)
        params += publish_params
    with connection.cursor() as cursor:
        try:
            cursor.execute(";\n".join(statements), params)
            cursor.nextset()  # past BEGIN: the call's update
            completed = cursor.rowcount == 1
            cursor.execute("COMMIT" if completed else "ROLLBACK")
        except BaseException:
            roll_back(cursor)
            raise
    return completed


# The task's row as finish_task saves it, cost_usd summed over its calls (_task_cost).
SAVE_DONE = f"""
    UPDATE {ReadingTask._meta.db_table} SET status = %s, output = %s, texts = %s::jsonb,
        model_used = %s, attempts = %s, finished_at = %s,
        cost_usd = (SELECT coalesce(sum(cost_usd), 0) FROM {LLMCall._meta.db_table}
                    WHERE task_id = %s)
    WHERE id = %s
"""


def fail_task(task_id, *, error: str, attempts: int, reading_id=None) -> None:
    with transaction.atomic():
        ReadingTask.objects.filter(pk=task_id).update(
            status=TaskStatus.FAILED,
            error=error,
            attempts=attempts,
            cost_usd=_task_cost(task_id),
            finished_at=timezone.now(),
        )
        if reading_id is not None:
            failed = {"task": task_id, "status": TaskStatus.FAILED}
            live.publish(reading_id, [(EventKind.TASK_FINISHED, failed)])


def _task_cost(task_id):
    """What every attempt of the task cost, retries and fallbacks included: summed by the
    update that saves the task, not in a round trip of its own."""
    spent = (
        LLMCall.objects.filter(task_id=task_id)
        .order_by()
        .values("task_id")
        .annotate(total=Sum("cost_usd"))
        .values("total")
    )
    return Coalesce(Subquery(spent), Value(Decimal(0)), output_field=DecimalField())


def finish(
    reading_id, *, error: str = "", timings: dict | None = None, has_reservations=None
) -> Reading:
    """End the reading as done (or failed, with error) and save its metrics. A caller that
    knows the reading holds no budget reservations says so (has_reservations=False)."""
    totals = LLMCall.objects.filter(reading_id=reading_id).aggregate(
        calls=Count("id"),
        rate_limit_hits=Count("id", filter=Q(outcome=CallOutcome.RATE_LIMITED)),
        retries=Count("id", filter=Q(is_retry=True)),
        # A fallback is a call sent to a model other than the allocated one, counted as
        # calls like rate-limit hits and retries (and as on the reports page and the bench).
        fallbacks=Count("id", filter=Q(is_fallback=True)),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cost_usd=Sum("cost_usd"),
    )
    fields = {
        "status": ReadingStatus.FAILED if error else ReadingStatus.DONE,
        "error": error,
        "finished_at": timezone.now(),
        "calls": totals["calls"],
        "rate_limit_hits": totals["rate_limit_hits"],
        "retries": totals["retries"],
        "fallbacks": totals["fallbacks"],
        "input_tokens": totals["input_tokens"] or 0,
        "output_tokens": totals["output_tokens"] or 0,
        "cost_usd": totals["cost_usd"] or Decimal(0),
        **(timings or {}),
    }
    with transaction.atomic():
        Reading.objects.filter(pk=reading_id).update(**fields)
        # What the reading still holds goes back to its budgets as it ends, never before:
        # a reading resumed after a crash keeps its reservation.
        if has_reservations is not False:
            release_reading(reading_id)
        live.compact_and_publish(
            reading_id,
            [(EventKind.READING_FINISHED, {"status": fields["status"], "error": error})],
        )
    reading = Reading.objects.get(pk=reading_id)
    # Once committed (at once outside a transaction), so the runtime sees the reading ended.
    transaction.on_commit(
        lambda: reading_ended.send(Reading, reading_id=reading.pk, owner_id=reading.owner_id)
    )
    return reading


def state_for(
    reading: Reading, *, economy: bool = False, tasks=None, has_reservations=None
) -> ReadingState:
    """What rendering and calling need, without begin()'s takeover of the reading: economy
    readings (readings/economy.py) have no job that owns them while their batches wait.
    What the caller already knows is not asked again: the reading's tasks (begin() has just
    made them) and whether it holds budget reservations."""
    allocator = get_allocator()
    spread = reading.spread
    if has_reservations is None:
        has_reservations = reading.reservations.exists()
    drawn = reading.drawn_cards.select_related("position", "card").order_by("position__index")
    return ReadingState(
        reading=reading,
        spread=spread,
        cards=[DrawnCard(position=d.position, card=d.card, reversed=d.reversed) for d in drawn],
        tasks=tasks if tasks is not None else list(reading.tasks.all()),
        configs={t: allocator.get_config(t, spread=spread) for t in TaskType.values},
        templates=template_names(
            spread, [TaskType(t).kind for t in TaskType.values], reading.language
        ),
        max_concurrent_calls=allocator.max_concurrent_calls(spread),
        has_reservations=has_reservations,
        cost_estimate=(
            CostEstimate.objects.filter(reading=reading).first() if has_reservations else None
        ),
        economy=economy,
    )
