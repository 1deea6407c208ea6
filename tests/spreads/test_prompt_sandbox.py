"""Prompt templates are written by staff and run for every reading: they render in an engine
with an allow-list of tags and filters, against plain values of the reading being written,
so that no template can reach a user, a password hash, an API token or another reading."""

import dataclasses

import pytest
from django.template import TemplateSyntaxError
from rest_framework.authtoken.models import Token

from readings import store, task_runner
from readings.services import reading_create
from spreads.models import PromptTemplate, Spread
from spreads.prompt_editor import BUILTIN_DIR
from spreads.prompt_sandbox import ALLOWED_FILTERS, ALLOWED_TAGS, refusal
from spreads.prompts import render_prompt, sample_context

pytestmark = pytest.mark.django_db

KINDS = ["guide", "card", "overall", "relationships", "advice"]

ADD = "/admin/spreads/prompttemplate/add/"
PREVIEW = "/admin/spreads/prompttemplate/preview/"

# Walks out of the reading along ORM relations: card -> its draws in every reading -> their
# owners; spread and position -> every reading of the spread.
HOSTILE = """Q: {{ question }}
{{ spread.readings.all }}{{ spread.positions.all }}{{ spread.pk }}
{% for r in spread.readings.all %}
  [{{ r.question }} {{ r.owner.password }} {{ r.owner.auth_token.key }}]
{% endfor %}
{% for c in cards %}
  {{ c.card.drawn_cards.all }}{{ c.card.pk }}{{ c.card.id }}
  {% for d in c.card.drawn_cards.all %}
    [{{ d.reading.question }} {{ d.reading.owner.password }} {{ d.reading.owner.auth_token.key }}]
  {% endfor %}
  {% for r in c.position.spread.readings.all %}[{{ r.question }}]{% endfor %}
{% endfor %}
{% for r in card_results %}{{ r.card.drawn_cards.all }}{% endfor %}"""


@pytest.mark.parametrize(
    "body, named",
    [
        ("{% debug %}", "{% debug %}"),
        ("{% load static %}{% static 'x' %}", "{% load %}"),
        ('{% include "guide.txt" %}', "{% include %}"),
        ("{% ssi '/etc/passwd' %}", "{% ssi %}"),
        ('{% extends "guide.txt" %}', "{% extends %}"),
        ("{% now 'Y' %}", "{% now %}"),
        ("{{ spread|pprint }}", "the filter pprint"),
    ],
)
def test_the_admin_refuses_a_tag_or_filter_outside_the_allow_list_and_names_it(
    staff_client, body, named
):
    response = staff_client.post(ADD, {"name": "card.txt", "body": f"Q: {{{{ question }}}} {body}"})

    assert response.status_code == 200
    page = response.content.decode()
    assert f"prompt templates cannot use {named}" in page.replace("&#x27;", "'")
    assert not PromptTemplate.objects.exists()


def test_the_refusal_names_every_construct_and_says_what_is_allowed():
    message = refusal("{% debug %}{% load i18n %}{{ question|pprint|upper }}{% if x %}{% endif %}")

    assert "cannot use {% debug %}, {% load %} or the filter pprint." in message
    assert f"Tags they can use: {', '.join(ALLOWED_TAGS)}." in message
    assert f"Filters: {', '.join(ALLOWED_FILTERS)}." in message


def test_the_preview_names_a_refused_tag_instead_of_rendering(staff_client):
    answer = staff_client.post(PREVIEW, {"name": "card.txt", "body": "{% debug %}"}).json()

    assert "prompt templates cannot use {% debug %}" in answer["error"]
    assert answer["text"] == ""


def test_a_template_written_straight_to_the_database_still_cannot_run_a_refused_tag():
    # Past the admin's check (an old row, a shell): the engine itself has no such tag.
    PromptTemplate.objects.create(name="card.txt", body="{% debug %}")

    with pytest.raises(TemplateSyntaxError):
        render_prompt("card.txt", sample_context())


def test_every_shipped_template_keeps_to_the_allow_list():
    for path in BUILTIN_DIR.glob("*.txt"):
        assert refusal(path.read_text()) is None, path.name


def test_templates_are_given_only_strings_numbers_and_tuples_of_them():
    def plain(value):
        if dataclasses.is_dataclass(value):
            assert type(value).__dataclass_params__.frozen, type(value)
            return all(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
        if isinstance(value, tuple):
            return all(plain(item) for item in value)
        return isinstance(value, str | int | float)

    context = sample_context(Spread.objects.get(slug="celtic_cross"))
    for name, value in context.as_dict().items():
        assert plain(value), name


def test_the_admin_refuses_a_walk_along_a_relation_as_an_unknown_variable(staff_client):
    body = "{% for c in batch %}{{ c.card.drawn_cards.all }}{% endfor %}"

    response = staff_client.post(ADD, {"name": "card.txt", "body": body})

    assert "Unknown variable: c.card.drawn_cards.all." in response.content.decode()
    assert not PromptTemplate.objects.exists()


def test_a_loop_over_another_relation_renders_nothing():
    body = "Q: {{ question }}{% for r in spread.readings.all %}LEAK{% endfor %}"

    assert render_prompt_body(body) == f"Q: {sample_context().question}"


def render_prompt_body(body):
    PromptTemplate.objects.create(name="probe.txt", body=body)
    return render_prompt("probe.txt", sample_context(Spread.objects.get(slug="three_card")))


# store.begin takes the reading as the worker does, on a connection in autocommit.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_hostile_template_cannot_reach_a_user_a_token_or_another_reading(bob, charlie):
    bob_token = Token.objects.create(user=bob)
    charlie_token = Token.objects.create(user=charlie)
    theirs = reading_create(
        owner=charlie, spread="three_card", question="Charlie's secret: will I leave my job?"
    )
    mine = reading_create(owner=bob, spread="three_card", question="Where is my life going?")
    # Same cards, so that the card -> draws -> readings walk has the other reading to find.
    for drawn, other in zip(
        mine.drawn_cards.order_by("position__index"),
        theirs.drawn_cards.order_by("position__index"),
        strict=True,
    ):
        drawn.card = other.card
        drawn.save()
    # Written straight to the database, as if it had got past the admin, for every part.
    parts = ["layout", "card_results", *(f"three_card_{kind}" for kind in KINDS)]
    for part in parts:
        PromptTemplate.objects.create(name=f"{part}.txt", body=HOSTILE)

    # The engine's own render path: its state, each task's context, the store's render.
    state = store.begin(mine.pk)
    texts = [task_runner.prompt_for(state, task).text for task in state.tasks]

    secrets = [
        theirs.question,
        bob.password,
        charlie.password,
        "pbkdf2",
        bob_token.key,
        charlie_token.key,
        str(theirs.pk),
    ]
    assert len(texts) == len(state.tasks) > 0
    for text in texts:
        assert "Q: Where is my life going?" in text  # the template did render
        assert not [secret for secret in secrets if secret in text]
        assert "QuerySet" not in text and "<Reading" not in text


def test_the_admin_refuses_a_walk_along_a_model_relation_even_where_it_renders_nothing(
    staff_client,
):
    body = "{{ question }}{% for d in cards.0.card.drawncard_set.all %}{{ d }}{% endfor %}"

    response = staff_client.post(ADD, {"name": "card.txt", "body": body})

    page = response.content.decode()
    assert "cards.0.card.drawncard_set.all reaches for something they do not have" in page
    assert not PromptTemplate.objects.exists()
