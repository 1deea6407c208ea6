"""Where the engine meets the database: what a run of a reading may take for itself."""

import pytest

from readings import store
from readings.models import TaskStatus
from readings.services import reading_create

# begin() opens the run as the worker does, on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_phase_claims_only_the_tasks_no_run_has_done_or_holds():
    reading = reading_create(spread="celtic_cross", question="Where is my career going?")
    state = store.begin(reading.pk)
    done, held, *free = [t for t in state.tasks if t.phase == 1]
    done.status = TaskStatus.DONE
    done.save()
    held.status = TaskStatus.RUNNING  # another run of the reading holds it
    held.save()

    claimed = store.claim_tasks([t.pk for t in (done, held, *free)])

    assert claimed == {t.pk for t in free}
    statuses = dict(reading.tasks.values_list("pk", "status"))
    assert [statuses[t.pk] for t in free] == [TaskStatus.RUNNING] * len(free)
    assert statuses[done.pk] == TaskStatus.DONE
    # Claimed again (a second run asking for the same phase): none of them.
    assert store.claim_tasks([t.pk for t in free]) == set()


def test_a_phase_nobody_else_touched_is_claimed_whole():
    reading = reading_create(spread="celtic_cross", question="Where is my career going?")
    phase_1 = [t.pk for t in store.begin(reading.pk).tasks if t.phase == 1]

    assert store.claim_tasks(phase_1) == set(phase_1)
