"""A reader cannot sign up under a name that looks like another reader's."""

import pytest
from django.contrib.auth import get_user_model

from accounts.usernames import skeleton

pytestmark = pytest.mark.django_db


def sign_up(client, username, **headers):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": "a-long-pass-9", "password2": "a-long-pass-9"},
        **headers,
    )


@pytest.mark.parametrize(
    "look_alike, why",
    [
        ("аlice", "looks too much like"),  # a Cyrillic а
        ("alicе", "looks too much like"),  # a Cyrillic е
        ("a1ice", "looks too much like"),  # a one for the l
        ("ALICE", "already exists"),  # Django's own rule: the same name in other case
        ("ａlice", "already exists"),  # fullwidth: NFKC makes it alice
    ],
)
def test_a_look_alike_of_an_existing_name_is_refused(client, alice, look_alike, why):
    response = sign_up(client, look_alike)

    assert response.status_code == 200
    assert why in response.content.decode()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]


def test_the_refusal_speaks_the_readers_language(client, alice):
    response = sign_up(client, "аlice", HTTP_ACCEPT_LANGUAGE="ko")

    assert "이미 있는 독자의 이름과 너무 비슷합니다" in response.content.decode()


def test_names_that_only_share_letters_are_welcome(client, alice):
    assert sign_up(client, "alicia").status_code == 302
    assert sign_up(client, "아리스").status_code == 302


def test_the_skeleton_maps_every_look_alike_to_one_name():
    assert len({skeleton(name) for name in ["alice", "аlice", "ALICE", "a1ice", "ａlice"]}) == 1
    assert skeleton("bob") != skeleton("alice")
