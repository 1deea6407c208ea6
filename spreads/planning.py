"""The tasks of a reading, before any of them runs.

Phase 1 interprets the cards in batches (10 cards by 3 gives 3-3-3-1); phase 2 writes the
overall reading and the relationships between cards from phase 1's results; phase 3 gives
advice from everything before it.
"""

from dataclasses import dataclass

from spreads.models import TaskType

# Which phase each task type runs in.
PHASE_OF = {
    TaskType.CARD_INTERPRETATION: 1,
    TaskType.OVERALL_READING: 2,
    TaskType.RELATIONSHIPS: 2,
    TaskType.ADVICE: 3,
}


@dataclass(frozen=True)
class PlannedTask:
    task_type: str
    phase: int
    batch_index: int = 0
    position_indexes: tuple[int, ...] = ()


def batches(card_count: int, batch_size: int) -> list[list[int]]:
    """Position indexes (1-based) split into consecutive batches of at most batch_size."""
    if card_count < 1 or batch_size < 1:
        raise ValueError("card_count and batch_size must be at least 1")
    indexes = list(range(1, card_count + 1))
    return [indexes[start : start + batch_size] for start in range(0, card_count, batch_size)]


def plan_tasks(card_count: int, batch_size: int) -> list[PlannedTask]:
    cards = [
        PlannedTask(
            TaskType.CARD_INTERPRETATION,
            PHASE_OF[TaskType.CARD_INTERPRETATION],
            batch_index=i,
            position_indexes=tuple(batch),
        )
        for i, batch in enumerate(batches(card_count, batch_size))
    ]
    return [
        *cards,
        PlannedTask(TaskType.OVERALL_READING, PHASE_OF[TaskType.OVERALL_READING]),
        PlannedTask(TaskType.RELATIONSHIPS, PHASE_OF[TaskType.RELATIONSHIPS]),
        PlannedTask(TaskType.ADVICE, PHASE_OF[TaskType.ADVICE]),
    ]
