"""`make run`: the web server, the worker and (without a key) the emulator, as one command.

Ctrl-C stops all of them. Each runs as a child process so a crash in one is visible and
ends the others rather than leaving a half-running platform.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from config import env as config_env

# Connections the kernel queues for the web server before it accepts them: a burst of
# simultaneous readings must wait in line, not be reset (runserver's backlog was 10).
LISTEN_BACKLOG = 2048


def web_server_command(addr: str) -> list[str]:
    """uvicorn, an ASGI server: it streams responses (a live reading's Server-Sent Events)
    without holding a thread per open stream. Static files come from WhiteNoise inside the
    app. WEB_PROCESSES (default 1) sets the processes; each has its own DATABASE_POOL_MAX."""
    host, _, port = addr.rpartition(":")
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        host or "127.0.0.1",
        "--port",
        port,
        "--workers",
        str(settings.WEB_PROCESSES),  # declared in config/env.py, read by config/settings.py
        "--backlog",
        str(LISTEN_BACKLOG),
        "--lifespan",
        "off",
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: only the
        # configured proxies may say who the client is.
        *(
            ["--forwarded-allow-ips", ",".join(settings.TRUSTED_PROXIES)]
            if settings.TRUSTED_PROXIES
            else ["--no-proxy-headers"]
        ),
        # Open event streams must not keep Ctrl-C waiting for ever.
        "--timeout-graceful-shutdown",
        "5",
    ]


class Command(BaseCommand):
    help = "Serve the platform at 127.0.0.1:8000 with its worker (and the emulator without a key)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args, addr, no_worker, **options):
        # `kill` (SIGTERM) stops everything too, as Ctrl-C does.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        env = os.environ.copy()
        children: list[subprocess.Popen] = []
        if not settings.ANTHROPIC_API_KEY and not settings.ANTHROPIC_BASE_URL:
            port = config_env.get("EMULATOR_PORT")
            env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}"
            self.stdout.write(f"No ANTHROPIC_API_KEY: LLM calls go to the emulator on port {port}.")
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "emulator", "--port", str(port)],
                    env=env,
                    cwd=settings.BASE_DIR,
                )
            )
        if not no_worker:
            # People wait on the web server; nobody waits on the worker's next few
            # milliseconds. Where both share the CPU, the web server goes first.
            nice = config_env.get("WORKER_NICE")
            children.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"],
                    env={**env, "DB_APPLICATION_NAME": "tarot-worker"},
                    cwd=settings.BASE_DIR,
                    preexec_fn=(lambda: os.nice(nice)) if nice else None,
                )
            )
        children.append(
            subprocess.Popen(
                web_server_command(addr),
                env={**env, "DB_APPLICATION_NAME": "tarot-web"},
                cwd=settings.BASE_DIR,
            )
        )
        self.stdout.write(self.style.SUCCESS(f"Admin: http://{addr}/admin/  (Ctrl-C stops all)"))
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
