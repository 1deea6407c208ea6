"""Every prompt render is bounded: loops, characters and time. A hostile template is refused
when staff save it; forced into the database anyway, it fails its task with a clear message
instead of holding the worker's CPU or memory."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from allocation import staff_config
from allocation.client_pool import runtime
from readings import engine, store
from readings.engine import run_reading, run_reading_sync
from readings.models import ReadingStatus, TaskStatus
from readings.services import reading_create
from spreads import prompt_sandbox
from spreads.models import PromptTemplate
from spreads.prompts import MAX_QUESTION_LENGTH, render_problem, worst_context

ADD = "/admin/spreads/prompttemplate/add/"
PREVIEW = "/admin/spreads/prompttemplate/preview/"


def loops_over_the_question(depth: int) -> str:
    """`depth` nested loops over the question's letters: 1,000 ** depth iterations at its
    longest, 33 ** depth on the admin's sample question."""
    return (
        "{{ question }}"
        + "{% for a in question|make_list %}" * depth
        + "."
        + "{% endfor %}" * depth
    )


def doublings(count: int) -> str:
    """`count` {% with %} doublings of the question: 2 ** count times its length."""
    names = [chr(97 + i) for i in range(count)]
    first = "{% with a=question|add:question %}"
    rest = "".join(f"{{% with {b}={a}|add:{a} %}}" for a, b in pairwise(names))
    return first + rest + f"{{{{ {names[-1]} }}}}" + "{% endwith %}" * count


NESTED_LOOPS = loops_over_the_question(3)  # a billion iterations
DOUBLINGS = doublings(22)  # four million times the question
# Harmless on the admin's 33-character sample question, not on a 1,000-character one.
TWO_LOOPS = loops_over_the_question(2)
TWELVE_DOUBLINGS = doublings(12)


def render(body: str) -> str:
    template = prompt_sandbox.engine().from_string(body)
    return prompt_sandbox.render(template, worst_context().as_dict())


@pytest.mark.django_db
def test_nested_loops_over_the_longest_question_stop_at_the_loop_budget(settings):
    with pytest.raises(prompt_sandbox.RenderBudgetExceeded, match="loop iterations"):
        render(NESTED_LOOPS)


@pytest.mark.django_db
def test_a_chain_of_doublings_stops_at_the_character_budget():
    with pytest.raises(prompt_sandbox.RenderBudgetExceeded, match="characters"):
        render(DOUBLINGS)


@pytest.mark.django_db
def test_a_slow_render_stops_at_the_time_budget(settings):
    settings.PROMPT_RENDER_MAX_LOOPS = 10**9
    settings.PROMPT_RENDER_MAX_CHARS = 10**9
    settings.PROMPT_RENDER_MAX_MS = 50
    with pytest.raises(prompt_sandbox.RenderBudgetExceeded, match="0.05 s"):
        render(NESTED_LOOPS)


@pytest.mark.django_db
def test_the_worst_input_is_the_longest_question_on_the_largest_spread():
    worst = worst_context()
    assert len(worst.question) == MAX_QUESTION_LENGTH
    assert len(worst.cards) == 12  # the horoscope, the largest seeded spread


@pytest.mark.django_db
@pytest.mark.parametrize("body", [TWO_LOOPS, TWELVE_DOUBLINGS])
def test_the_admin_refuses_a_template_that_goes_over_the_budget_at_the_worst_input(
    staff_client, body
):
    response = staff_client.post(ADD, {"name": "card.txt", "body": body})

    assert response.status_code == 200
    assert "the longest question and the largest spread a reading can have" in (
        response.content.decode()
    )
    assert not PromptTemplate.objects.exists()


@pytest.mark.django_db
def test_every_shipped_template_fits_the_budget_at_the_worst_input():
    from spreads.prompt_editor import builtin_source, builtin_templates

    for shipped in builtin_templates():
        assert render_problem(builtin_source(shipped.name)) is None, shipped.name


@pytest.mark.django_db
def test_the_preview_needs_the_right_to_change_templates(client, bob):
    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(Permission.objects.get(codename="view_prompttemplate"))
    client.force_login(bob)

    response = client.post(PREVIEW, {"name": "card.txt", "body": NESTED_LOOPS})

    assert response.status_code == 403


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_hostile_template_forced_into_the_database_fails_its_task_not_the_worker(emulator):
    PromptTemplate.objects.create(name="three_card_card.txt", body=NESTED_LOOPS)  # unchecked
    question = "x" * MAX_QUESTION_LENGTH

    reading = run_reading_sync(reading_create(spread="three_card", question=question).pk)

    assert reading.status == ReadingStatus.FAILED
    assert "three_card_card.txt went over its render budget" in reading.error
    assert reading.tasks.filter(status=TaskStatus.FAILED).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_render_held_to_its_time_budget_does_not_hold_up_another_users_reading(
    emulator, settings, django_user_model
):
    # Only the time budget stops this render: it runs its full two seconds.
    settings.PROMPT_RENDER_MAX_LOOPS = 10**9
    settings.PROMPT_RENDER_MAX_CHARS = 10**9
    settings.PROMPT_RENDER_MAX_MS = 2000
    PromptTemplate.objects.create(name="three_card_card.txt", body=NESTED_LOOPS)  # unchecked
    mallory = django_user_model.objects.create_user("mallory")
    alice = django_user_model.objects.create_user("alice")
    hostile = reading_create(owner=mallory, spread="three_card", question="x" * 1000)
    ordinary = reading_create(owner=alice, spread="celtic_cross", question="Will it rain?")

    async def both():
        return await asyncio.gather(run_reading(hostile.pk), run_reading(ordinary.pk))

    hostile, ordinary = runtime.run(both())

    assert hostile.status == ReadingStatus.FAILED
    assert "went over its render budget" in hostile.error
    assert ordinary.status == ReadingStatus.DONE
    # Alice's reading never waited behind Mallory's render: all ten cards and three later
    # calls were done while it still ran.
    assert ordinary.finished_at < hostile.finished_at


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_render_on_its_own_thread_gives_back_the_connection_it_took():
    # Staff's templates are read afresh now and then, from whichever thread renders; a
    # connection kept by each render thread would drain the worker's pool.
    state = store.begin(reading_create(spread="celtic_cross", question="Will it rain?").pk)

    def render_afresh_then_look():
        staff_config.forget_all()
        engine._prompt_for(state, state.tasks[0])
        return connection.connection

    with ThreadPoolExecutor(max_workers=1) as thread:
        assert thread.submit(render_afresh_then_look).result() is None
