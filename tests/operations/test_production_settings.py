"""Production defaults: DEBUG off unless asked for, `check --deploy` clean with the README's
production variables, Django's four password validators, and error reports that mask
credentials inside URLs."""

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from operations.error_reports import mask_url_credentials

# The variables README's "Production" section lists.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x9$Tq2!vL8#pW4@nZ6^rB1&kF3*hJ7%cM5(yD0)gS-eA+uV=oI_wE]lN[tR{sK}",
    "ALLOWED_HOSTS": "tarot.example.com",
    "HTTPS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "DATABASE_URL": "postgres://tarot:s3cret@db.internal:5432/tarot",
}


def run_settings(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_turns_debug_off_when_debug_is_not_set():
    result = run_settings("from django.conf import settings; print(settings.DEBUG)")

    assert result.stdout.strip() == "False", result.stderr


def test_it_passes_the_deploy_check_with_the_production_variables():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={**os.environ, **PRODUCTION_ENV},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("bob", "too short"),
        ("password123", "too common"),
        ("81726354918273", "entirely numeric"),
        ("bob-the-builder", "too similar to the username"),
    ],
)
def test_it_refuses_weak_passwords(django_user_model, password, why):
    bob = django_user_model(username="bob-the-builder")

    with pytest.raises(ValidationError):
        validate_password(password, user=bob)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "postgres://tarot:s3cret@db:5432/tarot",
            "postgres://tarot:********************@db:5432/tarot",
        ),
        ("redis://:hunter2@cache:6379/0", "redis://:********************@cache:6379/0"),
        ("postgres://db:5432/tarot", "postgres://db:5432/tarot"),
        ("see https://example.com/a:b@c", "see https://example.com/a:b@c"),
    ],
)
def test_it_masks_passwords_inside_urls(text, masked):
    assert mask_url_credentials(text) == masked


def error_page_for(request) -> str:
    """The DEBUG page of an error raised here, where no local variable holds a password."""
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        return ExceptionReporter(request, *sys.exc_info()).get_traceback_html()


def test_it_masks_a_database_url_in_the_debug_error_page(settings):
    # Random passwords: the page also shows this test's source, which must not contain them.
    db_password, redis_password = secrets.token_hex(8), secrets.token_hex(8)
    settings.DEBUG = True
    # runserver copies the process environment into request.META.
    request = RequestFactory().get("/")
    request.META["DATABASE_URL"] = f"postgres://tarot:{db_password}@db.internal:5432/tarot"
    settings.Q_CLUSTER = {"redis": f"redis://:{redis_password}@cache:6379/0"}

    page = error_page_for(request)

    assert db_password not in page and redis_password not in page
    assert "postgres://tarot:********************@db.internal" in page
