"""`make run`'s last step: web server, worker and emulator as one command that stops as one."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from benchmarks.workers import database_url
from tests.polling import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_it_serves_the_admin_and_the_emulator_and_ctrl_c_stops_everything(tmp_path):
    web, emulator = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "EMULATOR_PORT": str(emulator),
        "ANTHROPIC_API_KEY": "",
        "ANTHROPIC_BASE_URL": "",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{web}"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: (
                    answers(f"http://127.0.0.1:{web}/admin/login/")
                    and answers(f"http://127.0.0.1:{emulator}/_emulator/stats")
                ),
                timeout=60,
                what="the admin and the emulator to answer",
                explain=log.read_text,
            )
            children = [
                int(pid)
                for pid in subprocess.run(
                    ["pgrep", "-P", str(serve.pid)], capture_output=True, text=True
                ).stdout.split()
            ]
            assert len(children) == 3, "emulator, worker and web server"
            niceness = {command_of(pid): niceness_of(pid) for pid in children}
            assert niceness["qcluster"] == niceness["uvicorn"] + 5, "the web server goes first"

            serve.send_signal(signal.SIGINT)
            assert serve.wait(timeout=30) == 0
        finally:
            if serve.poll() is None:
                serve.kill()

    assert not answers(f"http://127.0.0.1:{web}/admin/login/")
    assert not answers(f"http://127.0.0.1:{emulator}/_emulator/stats")
    assert [pid for pid in children if alive(pid)] == [], "a child outlived serve"


def command_of(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    return next((word for word in ("qcluster", "uvicorn", "emulator") if word in argv[:3]), "")


def niceness_of(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def web_connections(dbname: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [dbname, "tarot-web"],
        )
        return cursor.fetchone()[0]


def test_the_web_server_takes_a_burst_serves_static_files_and_keeps_its_pool_bound(tmp_path):
    web = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_MAX": "3",
        "WEB_PROCESSES": "2",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-worker", "--addr", f"127.0.0.1:{web}"],
            cwd=settings.BASE_DIR,
            env={**env, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "x"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{web}"
            wait_for(
                lambda: answers(f"{base}/healthz"),
                timeout=60,
                what="the web server",
                explain=log.read_text,
            )
            # With DEBUG off (the default): the admin's and the API docs' static files.
            assert answers(f"{base}/static/admin/css/base.css")

            # 60 requests at once, each of which uses the database.
            def get(_):
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=30) as response:
                        return response.status
                except urllib.error.HTTPError as exc:
                    return exc.code
                except OSError as exc:
                    return repr(exc)

            dbname = connection.settings_dict["NAME"]
            peak = 0
            with ThreadPoolExecutor(max_workers=60) as pool:
                results = pool.map(get, range(60))
                for _ in range(20):
                    peak = max(peak, web_connections(dbname))
                    time.sleep(0.02)
                statuses = list(results)
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=30)

    assert all(isinstance(s, int) for s in statuses), "no connection refused or reset"
    assert 1 <= peak <= 2 * 3, "each web process holds at most DATABASE_POOL_MAX connections"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def guesses(base: str, count: int, headers: dict | None = None) -> list[int]:
    statuses = []
    for n in range(count):
        request = urllib.request.Request(
            f"{base}/api/auth/token/",
            data=f"username=bob&password=guess{n}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    return statuses


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_only_a_trusted_proxy_may_say_who_the_client_is(tmp_path, bob, trusted):
    web = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "ANTHROPIC_API_KEY": "x",
        "TOKEN_RATE": "2/min",
        "TRUSTED_PROXIES": trusted,
        "WEB_PROCESSES": "1",
    }
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-worker", "--addr", f"127.0.0.1:{web}"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{web}"
            wait_for(lambda: answers(f"{base}/healthz"), timeout=60, what="the web server")
            assert guesses(base, 3) == [400, 400, 429]
            forged = guesses(base, 1, {"X-Forwarded-For": "1.2.3.4"})
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=30)

    # From an untrusted peer the header changes nothing; a trusted proxy names the client.
    assert forged == ([429] if not trusted else [400])
