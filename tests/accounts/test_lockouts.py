"""Ten wrong passwords are answered as wrong; the 11th locks the account, and the address they
came from, on every login form: it, and any attempt after it (the right password too), is
told when to try again."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

WRONG = 10  # LOGIN_FAILURE_LIMIT's default


@pytest.fixture(autouse=True)
def roomy_token_throttle(monkeypatch):
    # The token endpoint's own throttle (10 a minute per address) would answer first.
    from budgets.throttles import TokenThrottle

    monkeypatch.setitem(TokenThrottle.THROTTLE_RATES, "token", "100/min")


def guess(client, url, password, **extra):
    return client.post(url, {"username": "bob", "password": password}, **extra)


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_the_eleventh_attempt_on_a_sign_in_page_is_locked_out(client, bob, url):
    for n in range(WRONG):
        assert guess(client, url, f"wrong{n}").status_code == 200

    eleventh = guess(client, url, "wrong-again")
    locked = guess(client, url, "bob-pass-123")

    assert eleventh.status_code == locked.status_code == 429
    assert int(locked["Retry-After"]) == 15 * 60
    assert "Too many failed sign-ins. Try again in 15 minutes." in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_token_endpoint_locks_out_too_with_a_json_answer(bob):
    api = APIClient()
    for n in range(WRONG):
        assert guess(api, "/api/auth/token/", f"wrong{n}").status_code == 400

    assert guess(api, "/api/auth/token/", "wrong-again").status_code == 429
    locked = guess(api, "/api/auth/token/", "bob-pass-123")

    assert locked.status_code == 429
    assert locked.json() == {"detail": "Too many failed sign-ins. Try again in 15 minutes."}
    assert int(locked["Retry-After"]) > 0


def test_the_account_is_locked_from_another_address_and_the_address_for_another_account(
    client, bob, charlie
):
    for n in range(WRONG + 1):
        guess(client, "/accounts/login/", f"wrong{n}")

    elsewhere = guess(client, "/accounts/login/", "bob-pass-123", REMOTE_ADDR="10.0.0.9")
    other_account = client.post(
        "/accounts/login/", {"username": "charlie", "password": "charlie-pass-123"}
    )

    assert elsewhere.status_code == 429
    assert other_account.status_code == 429


def test_the_lockout_speaks_the_readers_language(client, bob):
    for n in range(WRONG + 1):
        guess(client, "/accounts/login/", f"wrong{n}", HTTP_ACCEPT_LANGUAGE="ko")

    locked = guess(client, "/accounts/login/", "bob-pass-123", HTTP_ACCEPT_LANGUAGE="ko")

    assert "로그인 실패가 너무 많습니다. 15분 후에 다시 시도하세요." in locked.content.decode()


def test_a_right_password_before_the_limit_starts_the_count_again(client, bob):
    for n in range(WRONG):
        guess(client, "/accounts/login/", f"wrong{n}")
    assert guess(client, "/accounts/login/", "bob-pass-123").status_code == 302
    client.logout()

    for n in range(WRONG):
        guess(client, "/accounts/login/", f"again{n}")
    assert guess(client, "/accounts/login/", "bob-pass-123").status_code == 302
