"""POST /api/readings/ with a language, or without one: the reader's preference, then the
browser's Accept-Language. The API's messages follow Accept-Language too."""

import pytest

from accounts.models import Profile
from readings.models import Reading

pytestmark = pytest.mark.django_db


def create(client, **extra):
    body = {"spread": "three_card", "question": "Will it rain?", **extra.pop("body", {})}
    return client.post("/api/readings/", body, format="json", **extra)


def test_the_request_names_the_language(as_bob):
    response = create(as_bob, body={"language": "ko"})

    assert response.status_code == 202
    assert Reading.objects.get(pk=response.json()["id"]).language == "ko"
    assert as_bob.get(response["Location"]).json()["language"] == "ko"


def test_an_unsupported_language_is_a_400_naming_the_supported_ones(as_bob):
    response = create(as_bob, body={"language": "fr"})

    assert response.status_code == 400
    assert response.json() == {
        "language": ["'fr' is not a supported language; use one of: en, ko."]
    }
    assert not Reading.objects.exists()


def test_without_one_the_readers_preference_wins_over_the_browser(as_bob, bob):
    Profile.objects.create(user=bob, language="en")

    response = create(as_bob, HTTP_ACCEPT_LANGUAGE="ko-KR,ko;q=0.9")

    assert Reading.objects.get(pk=response.json()["id"]).language == "en"


def test_without_a_preference_the_browsers_language_decides(as_bob):
    korean = create(as_bob, HTTP_ACCEPT_LANGUAGE="ko-KR,ko;q=0.9,en;q=0.5")
    other = create(as_bob, HTTP_ACCEPT_LANGUAGE="fr-FR")

    assert Reading.objects.get(pk=korean.json()["id"]).language == "ko"
    assert Reading.objects.get(pk=other.json()["id"]).language == "en"


def test_the_apis_messages_are_in_korean_for_a_korean_browser(as_bob):
    response = create(as_bob, body={"question": " "}, HTTP_ACCEPT_LANGUAGE="ko")

    assert response.status_code == 400
    assert response.json()["question"] == ["질문을 입력하세요. 비워 둘 수 없습니다."]
