"""Starting real `manage.py qcluster` processes for the bench (the tests have their own)."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.db import connection
from django_q.tasks import async_task, result


def database_url() -> str:
    """The URL of the database this process uses, for a child process to use the same one."""
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("Real workers share the database: point DATABASE_URL at Postgres.")
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return (
        f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}"
    )


class WorkerCluster:
    def __init__(self, *, workers: int, base_url: str, extra_env: dict | None = None):
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "",
            "Q_WORKERS": str(workers),
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """A no-op job round trip proves the cluster is polling the queue."""
        task_id = async_task("math.floor", 1.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result(task_id) == 1:
                return
            if self.process.poll() is not None:
                raise RuntimeError("qcluster exited while starting")
            time.sleep(0.1)
        raise RuntimeError("qcluster did not pick up a job within a minute")

    def stop(self) -> None:
        if self.process.poll() is None:
            # The cluster's main process stops its own workers on SIGTERM.
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
