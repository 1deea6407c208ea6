"""Reads of readings, shared by the API, the `read` command and the reports."""

from readings.card_texts import split_by_card
from readings.models import Reading, TaskStatus
from spreads.models import TaskType


def reading_results(reading: Reading) -> dict:
    """The reading's text: one entry per position, then overall, relationships and advice."""
    drawn = {d.position.index: d for d in reading.drawn_cards.select_related("position", "card")}
    tasks = list(reading.tasks.all())
    texts: dict[int, str] = {}
    for task in tasks:
        if task.task_type != TaskType.CARD_INTERPRETATION or task.status != TaskStatus.DONE:
            continue
        if task.texts:  # the model's structured answer: each text is its position's
            texts.update((int(i), text) for i, text in task.texts.items())
        else:  # finished before answers were structured
            names = [drawn[i].position.name for i in task.position_indexes]
            parts = split_by_card(task.output, names)
            texts.update(zip(task.position_indexes, parts, strict=True))
    by_type = {t.task_type: t.output for t in tasks if t.status == TaskStatus.DONE}
    return {
        "cards": [
            {
                "index": index,
                "position": d.position.name,
                "card": d.card.name,
                "card_slug": d.card.slug,
                "orientation": "reversed" if d.reversed else "upright",
                "text": texts.get(index, ""),
            }
            for index, d in sorted(drawn.items())
        ],
        "overall": by_type.get(TaskType.OVERALL_READING, ""),
        "relationships": by_type.get(TaskType.RELATIONSHIPS, ""),
        "advice": by_type.get(TaskType.ADVICE, ""),
    }
