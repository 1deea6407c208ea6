"""Who sees what: anonymous callers get 401, someone else's reading is a 404 (its existence is
not revealed), staff see everything. Apps authenticate with a token."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from readings.models import Reading

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/spreads/"),
    ("get", "/api/spreads/three_card/"),
    ("get", "/api/cards/"),
    ("get", "/api/readings/"),
    ("post", "/api/readings/"),
    ("get", "/api/readings/00000000-0000-0000-0000-000000000000/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_it_answers_401_to_anonymous_callers(api, method, url):
    response = getattr(api, method)(url, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_it_stores_nothing_for_an_anonymous_caller(api):
    data = {"spread": "three_card", "question": "Anyone there?"}

    api.post("/api/readings/", data, format="json")

    assert Reading.objects.count() == 0


def test_it_answers_401_to_a_wrong_token(api):
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert api.get("/api/readings/").status_code == 401


def test_it_hides_someone_elses_reading_behind_a_404(as_charlie, queued_reading):
    response = as_charlie.get(f"/api/readings/{queued_reading.pk}/")

    assert response.status_code == 404


def test_it_shows_the_owner_their_reading(as_bob, queued_reading):
    assert as_bob.get(f"/api/readings/{queued_reading.pk}/").status_code == 200


def test_it_shows_staff_anyones_reading(as_alice, queued_reading):
    response = as_alice.get(f"/api/readings/{queued_reading.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == str(queued_reading.pk)


def test_it_gives_a_token_for_a_username_and_password(api, bob):
    response = api.post(
        "/api/auth/token/", {"username": "bob", "password": "bob-pass-123"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=bob).key}


def test_it_refuses_a_token_for_a_wrong_password(api, bob):
    response = api.post("/api/auth/token/", {"username": "bob", "password": "guess"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert not Token.objects.exists()


def test_it_lets_a_token_holder_create_and_read_a_reading(api, bob):
    token = api.post(
        "/api/auth/token/", {"username": "bob", "password": "bob-pass-123"}, format="json"
    ).json()["token"]
    app = APIClient()
    app.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    created = app.post(
        "/api/readings/", {"spread": "three_card", "question": "Does it work?"}, format="json"
    )
    fetched = app.get(created["Location"])

    assert created.status_code == 202
    assert fetched.status_code == 200
    assert Reading.objects.get().owner == bob


def test_it_accepts_a_logged_in_session(bob):
    browser = APIClient()
    browser.force_login(bob)

    assert browser.get("/api/readings/").status_code == 200
