"""What a reading asks of its budgets: when it is created, when a failed one is retried, and
before each of its phases (the rules are budgets/services.py's).

Each task's expected cost and worst case are kept with the reading's estimate
(CostEstimate.sources, by "task_type:batch_index"), so a retry asks only for the tasks left
and a phase holds only what its own calls could spend. A task's worst case is its prompt and
max_tokens of answer on the dearest model it may use, plus the earlier answers it quotes:
when its phase starts those answers are written, so the hold counts them as they are, not at
the max_tokens of the tasks that wrote them.
"""

import math
from collections import defaultdict
from decimal import Decimal

from budgets.models import CostEstimate
from budgets.services import Admission, with_margin
from readings.estimate_history import FEEDS, task_key
from readings.estimates import WORST_CHARS_PER_TOKEN
from readings.models import ReadingTask, TaskStatus
from spreads.models import TaskType
from spreads.planning import PHASE_OF

# Admission leaves room for each phase as it will likely be: the earlier answers it quotes at
# their expected length, counted as the worst case counts text (three characters a token, a
# third more tokens than the usual four). Only how soon an admitted reading can go on depends
# on it; what a phase may spend is held from the answers really written.
LIKELY_QUOTED_FACTOR = 4 / 3


def admission(estimate: CostEstimate, *, economy: bool, tasks_done=()) -> Admission:
    """What admitting the reading (or what is left of it, past `tasks_done`: keys of
    task_key) asks of each budget."""
    costs = _task_costs(estimate)
    if not costs:
        # Estimated before tasks' own figures were kept: the whole reading, at worst.
        worst = estimate.worst_case_usd
        return Admission(with_margin(estimate.expected_usd), worst, worst, hold_whole=economy)
    done = set(tasks_done)
    answers: dict[str, int] = defaultdict(int)
    for key, cost in costs.items():
        answers[_type_of(key)] += math.ceil(cost.output_tokens * LIKELY_QUOTED_FACTOR)
    steps: dict[int, Decimal] = defaultdict(Decimal)
    left = {key: cost for key, cost in costs.items() if key not in done}
    for key, cost in left.items():
        quoted = sum(answers[t] for t in FEEDS[TaskType(_type_of(key))])
        steps[PHASE_OF[_type_of(key)]] += cost.base + cost.per_quoted * quoted
    return Admission(
        expected_usd=with_margin(sum((c.expected for c in left.values()), Decimal(0))),
        largest_step_usd=max(steps.values(), default=Decimal(0)),
        worst_case_usd=sum((c.worst for c in left.values()), Decimal(0)),
        hold_whole=economy,
    )


def step_worst(
    estimate: CostEstimate | None, phase: list[ReadingTask], tasks: list[ReadingTask]
) -> Decimal | None:
    """What the reading's next phase, `phase`, could spend at worst, quoting the answers its
    finished `tasks` wrote; None when no estimate says (nothing is held then)."""
    if estimate is None:
        return None
    costs = _task_costs(estimate)
    quoted: dict[str, int] = defaultdict(int)
    for task in tasks:
        if task.status == TaskStatus.DONE:
            written = max(len(task.output), sum(len(t) for t in (task.texts or {}).values()))
            quoted[task.task_type] += math.ceil(written / WORST_CHARS_PER_TOKEN)
    worst = Decimal(0)
    for task in phase:
        cost = costs.get(task_key(task.task_type, task.batch_index))
        if cost is None:
            return estimate.worst_case_usd  # estimated before phases were: the whole reading
        worst += cost.base + cost.per_quoted * sum(quoted[t] for t in FEEDS[task.task_type])
    return worst


class _TaskCost:
    def __init__(self, source: dict):
        self.expected = Decimal(source["expected_usd"])
        self.worst = Decimal(source["worst_case_usd"])
        self.base = Decimal(source.get("worst_base_usd", source["worst_case_usd"]))
        self.per_quoted = Decimal(source.get("worst_per_quoted_token_usd", 0))
        self.output_tokens = int(source.get("output_tokens", 0))


def _type_of(key: str) -> str:
    return key.split(":")[0]


def _task_costs(estimate: CostEstimate) -> dict[str, _TaskCost]:
    return {
        key: _TaskCost(source)
        for key, source in (estimate.sources or {}).items()
        if isinstance(source, dict) and "worst_case_usd" in source
    }
