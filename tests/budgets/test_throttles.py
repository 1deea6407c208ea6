"""Throttles: reading creation per user (settings' default, per-user and per-group rates,
exemptions) and the token endpoint per client address; 429 with Retry-After."""

import re

import pytest
from django.contrib.auth.models import Group

from budgets import rate_buckets
from budgets.models import QuotaOverride
from tests.readings.api.conftest import client_for

pytestmark = pytest.mark.django_db

BODY = {"spread": "three_card", "question": "Again?"}


@pytest.fixture(autouse=True)
def fresh_counts(settings):
    rate_buckets.forget_all()
    yield
    rate_buckets.forget_all()


@pytest.fixture
def rate(monkeypatch):
    from budgets.throttles import ReadingCreateThrottle

    def set_default(value):
        monkeypatch.setitem(ReadingCreateThrottle.THROTTLE_RATES, "reading_create", value)

    return set_default


def create_many(user, count):
    api = client_for(user)
    return [api.post("/api/readings/", BODY, format="json") for _ in range(count)]


def test_a_user_is_throttled_at_the_default_rate_with_retry_after(bob, rate):
    rate("3/min")
    responses = create_many(bob, 4)
    assert [r.status_code for r in responses] == [202, 202, 202, 429]
    # Three at once, then one every 20 s: the next place opens within 20 s.
    assert 0 < int(responses[-1]["Retry-After"]) <= 20


def test_one_users_burst_does_not_throttle_another(bob, charlie, rate):
    rate("2/min")
    create_many(bob, 3)
    assert create_many(charlie, 1)[0].status_code == 202


def test_listing_readings_is_not_counted(bob, rate):
    rate("1/min")
    api = client_for(bob)
    for _ in range(3):
        assert api.get("/api/readings/").status_code == 200
    assert create_many(bob, 1)[0].status_code == 202


def test_staff_give_a_user_their_own_rate(bob, rate):
    rate("1/min")
    QuotaOverride.objects.create(user=bob, reading_rate="3/min")
    assert [r.status_code for r in create_many(bob, 4)] == [202, 202, 202, 429]


def test_a_group_rate_applies_to_its_members_the_most_generous_winning(bob, rate):
    rate("1/min")
    slow, fast = Group.objects.create(name="slow"), Group.objects.create(name="fast")
    bob.groups.add(slow, fast)
    QuotaOverride.objects.create(group=slow, reading_rate="2/min")
    QuotaOverride.objects.create(group=fast, reading_rate="3/min")
    assert [r.status_code for r in create_many(bob, 3)] == [202, 202, 202]


def test_an_exempt_user_is_never_throttled(bob, rate):
    rate("1/min")
    QuotaOverride.objects.create(user=bob, exempt_from_throttles=True)
    assert {r.status_code for r in create_many(bob, 4)} == {202}


def test_password_guesses_are_throttled_per_client_address(bob, monkeypatch):
    from rest_framework.test import APIClient

    from budgets.throttles import TokenThrottle

    api = APIClient()
    monkeypatch.setitem(TokenThrottle.THROTTLE_RATES, "token", "3/min")
    guesses = [
        api.post("/api/auth/token/", {"username": "bob", "password": f"guess{i}"}) for i in range(3)
    ]
    assert {g.status_code for g in guesses} == {400}
    blocked = api.post("/api/auth/token/", {"username": "bob", "password": "bob-pass-123"})
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) > 0
    elsewhere = api.post(
        "/api/auth/token/",
        {"username": "bob", "password": "bob-pass-123"},
        REMOTE_ADDR="10.0.0.2",
    )
    assert elsewhere.status_code == 200 and elsewhere.json()["token"]


def test_the_reading_page_counts_in_the_same_bucket_as_the_api(client, bob, rate):
    rate("2/min")
    create_many(bob, 2)
    client.force_login(bob)
    page = client.post("/", {"spread": "three_card", "question": "Once more?", "language": "en"})
    assert page.status_code == 429
    assert 0 < int(page["Retry-After"]) <= 30
    assert "Ask again in" in page.content.decode()


def test_the_page_says_when_to_ask_again_in_the_readers_language(client, bob, rate):
    rate("1/min")
    client.force_login(bob)
    ask = {"spread": "three_card", "question": "다시?", "language": "ko"}
    assert client.post("/", ask, HTTP_ACCEPT_LANGUAGE="ko").status_code == 302
    again = client.post("/", ask, HTTP_ACCEPT_LANGUAGE="ko")
    assert again.status_code == 429
    assert "초 후에 다시 요청하세요" in again.content.decode()


def test_a_long_wait_is_told_as_a_time_of_day_in_the_readers_own_zone(client, bob, rate):
    from accounts.models import Profile

    rate("1/hour")
    Profile.objects.update_or_create(user=bob, defaults={"time_zone": "Asia/Seoul"})
    client.force_login(bob)
    session = client.session
    session["time_zone"] = "Asia/Seoul"
    session.save()
    ask = {"spread": "three_card", "question": "다시?", "language": "ko"}
    assert client.post("/", ask, HTTP_ACCEPT_LANGUAGE="ko").status_code == 302

    again = client.post("/", ask, HTTP_ACCEPT_LANGUAGE="ko")

    assert again.status_code == 429
    assert re.search(r"\d\d:\d\d KST에 다시 요청하세요", again.content.decode())


def test_estimates_are_throttled_per_user(bob, charlie, monkeypatch):
    from budgets.throttles import EstimateThrottle

    monkeypatch.setitem(EstimateThrottle.THROTTLE_RATES, "estimate", "2/min")
    api = client_for(bob)
    answers = [api.post("/api/readings/estimate/", BODY, format="json") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1]["Retry-After"]) > 0
    assert (
        client_for(charlie).post("/api/readings/estimate/", BODY, format="json").status_code == 200
    )
