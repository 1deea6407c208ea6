"""Staff edit prompt templates in the admin: the built-in files are listed to override, a new
override starts from the file's text, and a live preview names unknown variables."""

import pytest

from spreads.models import PromptTemplate

pytestmark = pytest.mark.django_db

LIST = "/admin/spreads/prompttemplate/"
ADD = "/admin/spreads/prompttemplate/add/"
PREVIEW = "/admin/spreads/prompttemplate/preview/"


def test_it_lists_the_built_in_templates_with_a_way_to_override_each(staff_client):
    PromptTemplate.objects.create(name="advice.txt", body="Advise on {{ question }}.")

    page = staff_client.get(LIST).content.decode()

    assert f'href="{ADD}?name=celtic_cross_card.txt">Override celtic_cross_card.txt</a>' in page
    assert "Edit the override of advice.txt" in page
    assert "Override advice.txt" not in page


def test_an_override_starts_from_the_built_in_text(staff_client):
    form = staff_client.get(ADD, {"name": "celtic_cross_card.txt"}).context["adminform"].form

    assert form.initial["body"].startswith("Your step: card interpretations.")


def test_the_preview_renders_a_sample_reading_and_names_unknown_variables(staff_client):
    answer = staff_client.post(
        PREVIEW,
        {"name": "celtic_cross_card.txt", "body": "Q: {{ question }} / {{ qestion }}"},
    ).json()

    assert answer["text"].startswith("Q: What should I focus on this year? / {{ qestion ?}}")
    assert answer["unknown"] == ["qestion"]
    assert "Unknown variable: qestion." in answer["warning"]


def test_a_korean_template_previews_with_a_korean_reading(staff_client):
    body = "{{ question }}\n{% for c in card_results %}{{ c.text }}\n{% endfor %}{{ overall }}"

    korean = staff_client.post(PREVIEW, {"name": "advice_ko.txt", "body": body}).json()
    english = staff_client.post(PREVIEW, {"name": "advice.txt", "body": body}).json()

    assert korean["text"].startswith("올해 나는 무엇에 집중해야 할까요?")
    assert "자리의" in korean["text"] and korean["text"].endswith("전체 리딩의 예시입니다.")
    assert english["text"].startswith("What should I focus on this year?")
    assert english["text"].endswith("A sample overall reading.")


def test_a_method_that_needs_arguments_is_named_as_such_not_as_a_placeholder(staff_client):
    answer = staff_client.post(PREVIEW, {"name": "card.txt", "body": "{{ question.zfill }}"}).json()

    assert answer["unknown"] == ["a method that needs arguments (templates cannot pass any)"]
    assert "%s" not in answer["warning"] and "%s" not in answer["text"]


def test_the_preview_says_why_a_template_does_not_compile(staff_client):
    answer = staff_client.post(PREVIEW, {"name": "x.txt", "body": "{% if %}"}).json()

    assert answer["error"].startswith("The template does not compile")


def test_it_refuses_to_save_a_template_with_an_unknown_variable(staff_client):
    response = staff_client.post(
        ADD, {"name": "card.txt", "body": "{% for c in batch %}{{ c.card.nmae }}{% endfor %}"}
    )

    assert response.status_code == 200
    assert "Unknown variable: c.card.nmae." in response.content.decode()
    assert not PromptTemplate.objects.exists()


def test_the_editor_is_a_roomy_monospace_box(staff_client):
    page = staff_client.get(ADD).content.decode()

    assert 'class="prompt-body"' in page and 'rows="30"' in page
    assert "monospace" in page


def test_the_preview_is_for_staff_only(client):
    response = client.post(PREVIEW, {"name": "card.txt", "body": "x"})

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
