"""One task of a reading, whichever way its call goes.

The live engine (readings/engine.py) streams each task's call and economy readings
(readings/economy.py) send it in a Message Batch; both run a task through here:
- what its prompt is given (context_for) and the prompt itself (prompt_for);
- the answer format it must use (answer_format: a card batch answers each position under
  its index, through a forced tool call);
- its answer turned into the task's texts (task_texts), the way both save it.
So a card batch reads the same, and is saved the same, whether it streamed or was batched.
The task's state (claimed, done, failed) is saved through readings/store.py.
"""

from readings.card_answers import CardBatchAnswer, joined
from readings.card_texts import texts_for_later_phases
from readings.models import ReadingTask
from readings.store import ReadingState, render
from spreads.models import TaskType
from spreads.prompts import CardResult, PromptContext


def context_for(state: ReadingState, task: ReadingTask) -> PromptContext:
    """What the task's templates are given: its cards (phase 1), or what the earlier phases
    wrote (phases 2 and 3)."""
    context = PromptContext(question=state.reading.question, spread=state.spread, cards=state.cards)
    if task.phase == 1:
        wanted = set(task.position_indexes)
        context.batch = [c for c in state.cards if c.position.index in wanted]
        return context
    by_index = {c.position.index: c for c in state.cards}
    for done in sorted((t for t in state.tasks if t.phase == 1), key=lambda t: t.batch_index):
        if done.texts:
            by_position = {int(i): text for i, text in done.texts.items()}
            texts = [by_position[i] for i in done.position_indexes]
        else:  # finished before answers were structured: the old split
            names = [by_index[i].position.name for i in done.position_indexes]
            texts = texts_for_later_phases(done.output, names)
        for index, text in zip(done.position_indexes, texts, strict=True):
            card = by_index[index]
            context.card_results.append(
                CardResult(
                    position=card.position, card=card.card, orientation=card.orientation, text=text
                )
            )
    if task.phase == 3:
        for earlier in state.tasks:
            if earlier.task_type == TaskType.OVERALL_READING:
                context.overall = earlier.output
            elif earlier.task_type == TaskType.RELATIONSHIPS:
                context.relationships = earlier.output
    return context


def prompt_for(state: ReadingState, task: ReadingTask):
    """The prompt the task sends, the same for a streamed call and a batch request."""
    return render(state, task.task_type, context_for(state, task))


def answer_format(task: ReadingTask) -> CardBatchAnswer | None:
    """A card batch answers with each position's text under its index, never guessed; the
    other tasks answer in prose."""
    return CardBatchAnswer(list(task.position_indexes)) if task.phase == 1 else None


def task_texts(
    task: ReadingTask, *, text: str, texts: dict[int, str], names: dict[int, str]
) -> tuple[str, dict[int, str]]:
    """The task's output and, for a card batch, each position's text: a card batch's output
    is its positions' texts under their names (for staff), the other tasks' is their text."""
    if task.phase != 1:
        return text, {}
    return joined(texts, names), texts
