"""Statements that run thousands of times a minute are prepared on Postgres, and the few
paths that send several statements in one message still can."""

import os
import subprocess
import sys

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from config.db_messages import message_cursor, results
from config.env import BASE_DIR
from spreads.models import Spread

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are Postgres'"
)


@pytest.mark.django_db
def test_a_statement_a_connection_runs_often_is_prepared_once():
    for _ in range(6):
        Spread.objects.filter(slug="celtic_cross").exists()

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any('FROM "spreads_spread"' in statement for statement in prepared)


@pytest.mark.django_db
def test_a_message_of_several_statements_binds_its_parameters_on_the_client():
    refused = pytest.raises(ProgrammingError, match="multiple commands")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT %s::int; SELECT %s::int", [1, 2])

    with message_cursor() as cursor:
        assert results(cursor, "SELECT %s::int; SELECT %s::int", [1, 2]) == [[(1,)], [(2,)]]


def test_a_threshold_of_zero_binds_on_the_client_and_prepares_nothing():
    options = _database_options(DATABASE_PREPARE_THRESHOLD="0")
    assert "server_side_binding" not in options and "prepare_threshold" not in options

    options = _database_options()
    assert options["server_side_binding"] is True and options["prepare_threshold"] == 5


def _database_options(**variables) -> dict:
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(repr({k: v for k, v in settings.DATABASES['default']['OPTIONS'].items() "
        "if k in ('server_side_binding', 'prepare_threshold')}))"
    )
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_PREPARE_THRESHOLD"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**environment, **variables, "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return eval(result.stdout)  # noqa: S307 - our own repr of a dict of settings
