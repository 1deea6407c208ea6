"""Starting real `manage.py qcluster` processes for the bench (the tests have their own)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    """`manage.py qcluster` in its own process group, on this process's database, sending its
    LLM calls to `base_url`; its output goes to `log_path` when one is given. `launcher` is a
    command that execs the rest (e.g. one that gives the cluster a hostname of its own)."""

    def __init__(
        self,
        *,
        workers: int,
        base_url: str,
        extra_env: dict | None = None,
        log_path: Path | None = None,
        launcher: tuple[str, ...] = (),
    ):
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "",
            "Q_WORKERS": str(workers),
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*launcher, sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """A no-op job round trip proves the cluster is polling the queue (its result saved,
        though the platform keeps no successful job's)."""
        task_id = async_task("math.floor", 1.5, save=True)
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
            # The cluster's main process stops its own workers on SIGTERM (sent to the whole
            # group, the workers' handlers leave the cluster waiting for them).
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the cluster and its workers: no clean-up code runs, as in a crash."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_log()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def _close_log(self) -> None:
        if self._log:
            self._log.close()


class WebServer:
    """The ASGI app (config/asgi.py) in a real uvicorn process on a free loopback port, on this
    process's database: what serves event streams in production, not the test client."""

    def __init__(self, *, extra_env: dict | None = None, log_path: Path | None = None):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("uvicorn exited while starting")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("uvicorn did not answer within 30 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._log:
            self._log.close()

    def __enter__(self) -> "WebServer":
        self.wait_until_ready()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
