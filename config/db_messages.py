"""Several SQL statements in one message to Postgres (Django's client-side parameter binding
allows it), for the few paths that run often enough for round trips to matter: the limiter's
sequences (allocation/limiter/backends/postgres.py), a task's end (readings/store.py) and the
fair queue's filling of a user's slots (worker/dispatch.py)."""

from django.db import connection


def results(cursor, sql: str, params) -> list[list[tuple]]:
    """Every row-returning statement's rows, in order, of a message of several statements."""
    cursor.execute(sql, params)
    found = []
    while True:
        if cursor.description is not None:
            found.append(cursor.fetchall())
        if not cursor.nextset():
            return found


def roll_back(cursor) -> None:
    """End the transaction a message began, after it failed."""
    try:
        cursor.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the connection is broken: the pool discards it
        connection.close()
