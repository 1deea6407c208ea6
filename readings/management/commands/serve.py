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

EMULATOR_PORT = 8765


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
            port = int(env.get("EMULATOR_PORT", EMULATOR_PORT))
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
            children.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"], env=env, cwd=settings.BASE_DIR
                )
            )
        children.append(
            subprocess.Popen(
                # --insecure: the admin's static files also when DEBUG is off (the default).
                [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", addr],
                env=env,
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
