"""Database statements each process of a benched platform runs, counted from inside it.

The service bench starts the platform with BENCH_STATEMENTS_DIR set; every process (web
server, worker cluster, its workers) then counts the statements its Django connections
execute and keeps the count in a file of its own there (written at most every half second
and at exit), and the bench adds the files up. Postgres cannot count them without
pg_stat_statements, which needs a server restart to load.
"""

import atexit
import os
import threading
import time
from pathlib import Path

from django.db.backends.signals import connection_created

WRITE_EVERY_S = 0.5


class StatementCounter:
    def __init__(self, directory: Path):
        self._directory = directory
        self._lock = threading.Lock()
        self._count = 0
        self._written_at = 0.0

    def __call__(self, execute, sql, params, many, context):
        with self._lock:
            self._count += len(params) if many and params is not None else 1
            due = time.monotonic() - self._written_at >= WRITE_EVERY_S
        if due:
            self.write()
        return execute(sql, params, many, context)

    def write(self) -> None:
        with self._lock:
            self._written_at = time.monotonic()
            count = self._count
        # One file per process: a forked worker counts from zero under its own pid.
        (self._directory / f"{os.getpid()}.count").write_text(str(count))


_counter: StatementCounter | None = None
_counter_pid: int | None = None


def _counter_here(directory: Path) -> StatementCounter:
    global _counter, _counter_pid
    if _counter is None or _counter_pid != os.getpid():
        _counter, _counter_pid = StatementCounter(directory), os.getpid()
        atexit.register(_counter.write)
    return _counter


def install(directory: str) -> None:
    """Count every statement of every connection this process opens from now on."""
    path = Path(directory)

    def on_connection(sender, connection, **kwargs):
        counter = _counter_here(path)
        if counter not in connection.execute_wrappers:
            connection.execute_wrappers.append(counter)

    connection_created.connect(on_connection, weak=False, dispatch_uid="bench_statements")


def total(directory: str) -> int:
    return sum(int(p.read_text() or 0) for p in Path(directory).glob("*.count"))
