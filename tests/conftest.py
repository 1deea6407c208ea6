"""Shared test setup: the suite runs on real Postgres, with named people.

alice is staff, bob a signed-up user, charlie another user who must never see bob's data.
"""

import pytest
from django.conf import settings


def pytest_sessionstart(session):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            "The suite runs on Postgres: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/tarot "
            "(make test does).",
            returncode=2,
        )
    import psycopg

    try:
        psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.OperationalError as exc:
        pytest.exit(
            f"Postgres is not answering at {db['HOST']}:{db['PORT']} ({exc}). Start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            returncode=2,
        )


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        username="alice", password="alice-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def charlie(django_user_model):
    return django_user_model.objects.create_user(username="charlie", password="charlie-pass-123")


@pytest.fixture
def staff_client(client, alice):
    client.force_login(alice)
    return client
