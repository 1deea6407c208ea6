"""Signing in lands somewhere real, and a missing, forbidden or broken page is the site's own
page in the reader's language, not Django's bare English one."""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.utils import translation
from django.views.defaults import permission_denied, server_error

pytestmark = pytest.mark.django_db

KOREAN = {"HTTP_ACCEPT_LANGUAGE": "ko-KR,ko;q=0.9"}


def sign_in(client, **extra):
    return client.post(
        "/accounts/login/" + extra.pop("query", ""),
        {"username": "bob", "password": "bob-pass-123"},
    )


def test_signing_in_lands_on_the_querents_home(client, bob):
    response = sign_in(client)

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_signing_in_goes_on_to_the_page_asked_for_on_this_site(client, bob):
    assert sign_in(client, query="?next=/readings/")["Location"] == "/readings/"


def test_signing_in_never_sends_the_reader_to_another_site(client, bob):
    assert sign_in(client, query="?next=https://evil.example/")["Location"] == "/"


def test_a_missing_page_is_the_sites_own_in_the_readers_language(client, bob):
    client.force_login(bob)

    response = client.get("/readings/00000000-0000-0000-0000-000000000000/", **KOREAN)

    assert response.status_code == 404
    page = response.content.decode()
    assert "페이지를 찾을 수 없습니다" in page
    assert 'href="/"' in page and "site.css" in page  # styled, with a way back


def test_a_forbidden_page_is_the_sites_own_in_the_readers_language():
    request = RequestFactory().get("/somewhere/")
    with translation.override("ko"):
        response = permission_denied(request, PermissionDenied())

    assert response.status_code == 403
    assert "허용되지 않습니다" in response.content.decode()


def test_a_server_error_is_the_sites_own_page_and_says_nothing_was_lost():
    request = RequestFactory().get("/somewhere/")
    with translation.override("ko"):
        response = server_error(request)

    assert response.status_code == 500
    page = response.content.decode()
    assert "문제가 발생했습니다" in page and "site.css" in page
