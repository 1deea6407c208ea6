"""What a reading asks of its budgets: when it is created, when a failed one is retried, and
before each of its phases (the rules are budgets/services.py's).

Each task's expected cost and worst case are kept with the reading's estimate
(CostEstimate.sources, by "task_type:batch_index"), so a retry asks only for the tasks left
and a phase holds only what its own calls could spend.
"""

from collections import defaultdict
from decimal import Decimal

from budgets.models import CostEstimate
from budgets.services import Admission, with_margin
from readings.estimates import ReadingEstimate
from spreads.planning import PHASE_OF


def task_key(task_type: str, batch_index: int) -> str:
    return f"{task_type}:{batch_index}"


def sources_with_costs(estimate: ReadingEstimate) -> dict:
    """The estimate's sources, each task's with its expected cost and worst case."""
    sources = estimate.sources()
    for task in estimate.tasks:
        key = task_key(task.task_type, task.batch_index)
        sources[key] = {
            **sources.get(key, {}),
            "expected_usd": str(task.expected_usd),
            "worst_case_usd": str(task.worst_case_usd),
        }
    return sources


def admission(estimate: CostEstimate, *, economy: bool, tasks_done=()) -> Admission:
    """What admitting the reading (or what is left of it, past `tasks_done`: keys of
    task_key) asks of each budget."""
    costs = _task_costs(estimate)
    left = {key: cost for key, cost in costs.items() if key not in set(tasks_done)}
    if not costs:
        # Estimated before tasks' own figures were kept: the whole reading, at worst.
        worst = estimate.worst_case_usd
        return Admission(with_margin(estimate.expected_usd), worst, worst, hold_whole=economy)
    steps: dict[int, Decimal] = defaultdict(Decimal)
    for key, (_, worst) in left.items():
        steps[PHASE_OF[key.split(":")[0]]] += worst
    return Admission(
        expected_usd=with_margin(sum((e for e, _ in left.values()), Decimal(0))),
        largest_step_usd=max(steps.values(), default=Decimal(0)),
        worst_case_usd=sum((w for _, w in left.values()), Decimal(0)),
        hold_whole=economy,
    )


def step_worst(estimate: CostEstimate | None, tasks) -> Decimal | None:
    """What the reading's next phase, `tasks` (ReadingTask rows), could spend at worst; None
    when the estimate does not say (the whole reading's worst case then stands)."""
    costs = _task_costs(estimate) if estimate is not None else {}
    try:
        return sum((costs[task_key(t.task_type, t.batch_index)][1] for t in tasks), Decimal(0))
    except KeyError:
        return estimate.worst_case_usd if estimate is not None else None


def _task_costs(estimate: CostEstimate) -> dict[str, tuple[Decimal, Decimal]]:
    costs = {}
    for key, source in (estimate.sources or {}).items():
        if isinstance(source, dict) and "worst_case_usd" in source:
            costs[key] = (Decimal(source["expected_usd"]), Decimal(source["worst_case_usd"]))
    return costs
