"""The service path, measured from outside: readings posted over HTTP to the REST API of the
web server and worker that `make run` starts (`manage.py serve`, default settings), each
API client posting a reading, waiting for it to finish, then posting the next.

What it reports beyond the readings' own figures: POSTs that got no 202, finished readings
per minute from the first POST to the last finish against the provider's ceiling for this
spread, every Postgres connection the platform held (pg_stat_activity, by the
application_name `serve` gives its web server and worker), the worker tree's memory, and
what the shared limiter cost per LLM call (its round trips, counted with its state).
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.db.models import Avg, F
from rest_framework.authtoken.models import Token

from allocation.allocator import env_name, get_allocator
from allocation.capacity import CallProfile, Capacity, calls_per_minute
from allocation.limiter import get_backend
from allocation.limiter.buckets import Limits
from allocation.models import CallOutcome, LLMCall
from benchmarks import statement_counts
from benchmarks.bench import BenchConfig, BenchResult, percentile
from benchmarks.workers import database_url
from budgets.models import QuotaOverride
from readings.models import Reading
from spreads.models import Spread, TaskType
from spreads.planning import plan_tasks

SAMPLE_EVERY_S = 0.2
PLATFORM_CONNECTIONS = ("tarot-web", "tarot-worker")


@dataclass
class ServiceRun:
    result: BenchResult
    requests_dropped: int = 0
    first_post: float = 0.0
    db_connections_peak: int = 0
    worker_rss_mb: float = 0.0
    dropped_reasons: Counter = field(default_factory=Counter)
    post_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_split: dict[str, float] = field(default_factory=dict)
    db_statements: int = 0


def one_model_env(spread_slug: str) -> dict[str, str]:
    """Every task of the spread on the card model, through the platform's own environment
    overrides (the admin's allocations stay as they are)."""
    spread = Spread.objects.get(slug=spread_slug)
    model = get_allocator().get_config(TaskType.CARD_INTERPRETATION, spread=spread).model
    return {env_name(spread_slug, task, "MODEL"): model for task in TaskType}


def ceiling(spread_slug: str, knobs, env: dict[str, str], reading_ids) -> Capacity:
    """Readings a minute the provider's limits allow (the emulator's knobs: requests, input
    and output tokens), each model's calls of a reading replayed through its buckets
    (allocation/capacity.py) with the allocations' max_tokens and the tokens and latencies
    the run's calls really had. Each model has its own limits: the slowest model binds.
    `env`: the model overrides the platform under test ran with."""
    limits = Limits(knobs.rpm or 0, knobs.itpm or 0, knobs.otpm or 0, knobs.max_concurrency)
    if not any(astuple(limits)):
        return Capacity(0.0, "")  # an unlimited provider: no ceiling
    spread = Spread.objects.get(slug=spread_slug)
    allocator = get_allocator()
    measured = {
        row["task_type"]: row
        for row in LLMCall.objects.filter(reading_id__in=reading_ids, outcome=CallOutcome.OK)
        .values("task_type")
        .annotate(
            input_tokens=Avg(F("input_tokens") + F("cache_write_tokens")),
            output_tokens=Avg("output_tokens"),
            latency_s=Avg("latency_s"),
        )
    }
    by_model: dict[str, list[CallProfile]] = {}
    for task in plan_tasks(spread.card_count, spread.batch_size):
        config = allocator.get_config(task.task_type, spread=spread)
        model = env.get(env_name(spread_slug, task.task_type, "MODEL")) or config.model
        seen = measured.get(task.task_type, {})
        by_model.setdefault(model, []).append(
            CallProfile(
                input_tokens=round(seen.get("input_tokens") or 0),
                max_tokens=config.max_tokens,
                output_tokens=round(seen.get("output_tokens") or 0),
                latency_s=seen.get("latency_s") or 0.0,
            )
        )
    per_model = []
    for calls in by_model.values():
        allowed = calls_per_minute(limits, calls)
        per_model.append(Capacity(allowed.calls_per_minute / len(calls), allowed.binding))
    slowest = min(per_model, key=lambda allowed: allowed.calls_per_minute)
    return Capacity(round(slowest.calls_per_minute, 1), slowest.binding)


def run_service(
    config: BenchConfig,
    progress: Callable[[int, int], None],
    *,
    base_url: str,
    extra_env: dict[str, str],
    users: int | None = None,
) -> ServiceRun:
    """`users`: that many ordinary users post the readings (throttles, budgets and the fair
    queue apply to them, nobody exempt); else the bench's own exempt client posts them all."""
    tokens = _user_tokens(users) if users else [_bench_token()]
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="bench-serve-", suffix=".log")[1])
    statements_dir = tempfile.mkdtemp(prefix="bench-statements-")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "BENCH_STATEMENTS_DIR": statements_dir,
        **extra_env,
    }
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{port}"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sampler = Sampler(connection.settings_dict["NAME"], serve.pid)
    run = ServiceRun(result=BenchResult(wall_s=0.0))
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}", serve, log)
        statements_before = statement_counts.total(statements_dir)
        sampler.start()
        run = _post_and_wait(config, progress, f"http://127.0.0.1:{port}", tokens, run)
        sampler.stop()
        # Counted after the run, before the platform stops (its shutdown is not a reading's).
        time.sleep(statement_counts.WRITE_EVERY_S * 2)
        run.db_statements = statement_counts.total(statements_dir) - statements_before
    finally:
        sampler.stop()
        _stop(serve)
        connections.close_all()
        shutil.rmtree(statements_dir, ignore_errors=True)
    run.db_connections_peak = sampler.connections_peak
    run.worker_rss_mb = round(sampler.worker_rss_peak_kb / 1024, 1)
    run.cpu_s = sampler.cpu.seconds()
    run.cpu_split = {role: sampler.cpu.seconds(role) for role in ("web", "worker", "db")}
    if os.environ.get("BENCH_KEEP_LOG"):
        sys.stderr.write(f"serve's log: {log}\n")
    else:
        log.unlink(missing_ok=True)
    return run


def service_figures(run: ServiceRun, *, ceiling: Capacity) -> dict:
    ids = run.result.reading_ids
    done = list(
        Reading.objects.filter(pk__in=ids, status="done").values_list("created_at", "finished_at")
    )
    finished = [at.timestamp() for _, at in done]
    minutes = (max(finished) - run.first_post) / 60 if finished else 0.0
    per_min = round(len(finished) / minutes, 1) if minutes else 0.0
    calls = LLMCall.objects.filter(reading_id__in=ids).count()
    transactions = sum(
        snapshot.state.transactions
        for snapshot in get_backend().snapshots(now=time.time()).values()
    )
    readings = len(ids)
    return {
        "requests_dropped": run.requests_dropped,
        "post_p50_ms": round(percentile(run.post_ms, 0.5), 1),
        "post_p95_ms": round(percentile(run.post_ms, 0.95), 1),
        "cpu_s_per_reading": round(run.cpu_s / readings, 3) if readings else None,
        "cpu_s_per_reading_by_process": {
            role: round(seconds / readings, 3) for role, seconds in run.cpu_split.items()
        }
        if readings
        else None,
        "db_statements_per_reading": round(run.db_statements / readings, 1) if readings else None,
        "event_bytes_per_reading": _event_bytes(ids) // readings if readings else None,
        "readings_per_min": per_min,
        "ceiling_readings_per_min": ceiling.calls_per_minute,
        "binding_limit": ceiling.binding,
        "share_of_ceiling": round(per_min / ceiling.calls_per_minute, 3)
        if ceiling.calls_per_minute
        else None,
        # Do readings finish in the order they came? Kendall's tau of arrival (the POST's
        # acknowledgement) against finish, and when they finish after the first POST.
        "finish_order_tau": kendall_tau([(created, at) for created, at in done]),
        "p50_finish_s": round(statistics.median(finished) - run.first_post, 1) if done else None,
        "last_finish_s": round(max(finished) - run.first_post, 1) if done else None,
        "db_connections_peak": run.db_connections_peak,
        "limiter_xacts_per_call": round(transactions / calls, 2) if calls else None,
        "worker_rss_mb": run.worker_rss_mb,
        **({"dropped_reasons": dict(run.dropped_reasons)} if run.dropped_reasons else {}),
    }


def kendall_tau(pairs: list[tuple]) -> float | None:
    """Kendall's tau-a of the pairs' first items against their second: 1 when both orders
    agree on every pair, -1 when they disagree on every one."""
    n = len(pairs)
    if n < 2:
        return None
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            a = (pairs[i][0] > pairs[j][0]) - (pairs[i][0] < pairs[j][0])
            b = (pairs[i][1] > pairs[j][1]) - (pairs[i][1] < pairs[j][1])
            score += a * b
    return round(score / (n * (n - 1) / 2), 3)


def _event_bytes(reading_ids) -> int:
    """What the readings' live events occupy in the database, row by row (as stored)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_column_size(e.*)), 0) FROM readings_readingevent e "
            "WHERE e.reading_id = ANY(%s::uuid[])",
            [[str(pk) for pk in reading_ids]],
        )
        return int(cursor.fetchone()[0])


def _post_and_wait(config, progress, base, tokens, run: ServiceRun) -> ServiceRun:
    shares = [
        config.readings // config.concurrency + (i < config.readings % config.concurrency)
        for i in range(config.concurrency)
    ]
    finished: dict[str, threading.Event] = {}
    lock = threading.Lock()
    done = 0
    stop_watching = threading.Event()

    def watch():
        # One reader of the database for every client, instead of each polling the API.
        while not stop_watching.wait(0.1):
            with lock:
                waiting = [pk for pk, event in finished.items() if not event.is_set()]
            if not waiting:
                continue
            for pk in Reading.objects.filter(pk__in=waiting, finished_at__isnull=False).values_list(
                "pk", flat=True
            ):
                finished[str(pk)].set()
        connections.close_all()

    def client(number: int, count: int):
        nonlocal done
        token = tokens[number % len(tokens)]
        for _ in range(count):
            posted = time.monotonic()
            run.first_post = run.first_post or time.time()
            reading_id = _post(base, token, config)
            with lock:
                run.post_ms.append((time.monotonic() - posted) * 1000)
            if reading_id is None or reading_id.startswith("!"):
                with lock:
                    run.requests_dropped += 1
                    run.dropped_reasons[reading_id or "?"] += 1
                continue
            event = threading.Event()
            with lock:
                finished[reading_id] = event
                run.result.reading_ids.append(reading_id)
            event.wait()
            run.result.e2e_s.append(time.monotonic() - posted)
            with lock:
                done += 1
                progress(done, config.readings)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            list(pool.map(client, range(len(shares)), shares))
    finally:
        stop_watching.set()
        watcher.join(timeout=5)
    run.result.wall_s = time.monotonic() - started
    run.result.queue_delay_s = [
        (r.started_at - r.created_at).total_seconds()
        for r in Reading.objects.filter(pk__in=run.result.reading_ids, started_at__isnull=False)
    ]
    return run


def _post(base: str, token: str, config: BenchConfig) -> str | None:
    """The new reading's id, or "!<why>" when the API did not take it."""
    body = json.dumps({"spread": config.spread, "question": config.question}).encode()
    request = urllib.request.Request(
        f"{base}/api/readings/",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status != 202:
                return f"!{response.status}"
            return json.loads(response.read())["id"]
    except urllib.error.HTTPError as exc:
        return f"!{exc.code}"
    except OSError as exc:
        return f"!{type(exc).__name__}"


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY_S: the platform's Postgres connections, and the resident memory of
    the worker's whole process tree."""

    def __init__(self, dbname: str, serve_pid: int):
        super().__init__(daemon=True)
        self.dbname, self.serve_pid = dbname, serve_pid
        self.connections_peak = 0
        self.worker_rss_peak_kb = 0
        self.cpu = CpuMeter()
        self._halt = threading.Event()

    def run(self):
        try:
            self._sample()  # the baseline: what the platform spent before the run is not counted
            while not self._halt.wait(SAMPLE_EVERY_S):
                self._sample()
            self._sample()
        finally:
            connections.close_all()

    def _sample(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = ANY(%s)",
                [self.dbname, list(PLATFORM_CONNECTIONS)],
            )
            backends = [pid for (pid,) in cursor.fetchall()]
        self.connections_peak = max(self.connections_peak, len(backends))
        self.worker_rss_peak_kb = max(self.worker_rss_peak_kb, self._worker_rss_kb())
        by_role: dict[str, list[int]] = {"db": backends}
        tree = _process_tree()
        roles = {self.serve_pid: "serve"}
        todo = [self.serve_pid]
        while todo:
            parent = todo.pop()
            for pid in tree.get(parent, []):
                # uvicorn's and django-q2's own children (WEB_PROCESSES, Q_WORKERS) are
                # started without a name of theirs: they do their parent's job.
                own = _role(_cmdline(pid))
                roles[pid] = own if own != "serve" else roles[parent]
                todo.append(pid)
        for pid, role in roles.items():
            by_role.setdefault(role, []).append(pid)
        self.cpu.sample(by_role)

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def _worker_rss_kb(self) -> int:
        tree = _process_tree()
        workers = [
            pid
            for pid in tree.get(self.serve_pid, [])
            if "qcluster" in _cmdline(pid) or "worker" in _cmdline(pid)
        ]
        total, todo = 0, list(workers)
        while todo:
            pid = todo.pop()
            total += _rss_kb(pid)
            todo.extend(tree.get(pid, []))
        return total


class CpuMeter:
    """CPU seconds (user + system) processes spent between the first sample and the last,
    by role: each process from when it was first seen (or from its start, if it started after
    the first sample) to when it was last seen."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self):
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._role: dict[int, str] = {}
        self._sampled = False

    def sample(self, pids_by_role: dict[str, list[int]]):
        for role, pids in pids_by_role.items():
            for pid in pids:
                ticks = _cpu_ticks(pid)
                if ticks is None:
                    continue
                self._first.setdefault(pid, ticks if not self._sampled else 0)
                self._last[pid] = ticks
                self._role[pid] = role
        self._sampled = True

    def seconds(self, role: str | None = None) -> float:
        pids = [pid for pid in self._last if role is None or self._role[pid] == role]
        return sum(self._last[pid] - self._first[pid] for pid in pids) / self.TICKS


def _role(cmdline: str) -> str:
    words = cmdline.split()
    return "web" if "uvicorn" in words else "worker" if "qcluster" in words else "serve"


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime, stime


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _process_tree(), [pid], [pid]
    while todo:
        children = tree.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def _process_tree() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rss_kb(pid: int) -> int:
    """The process's proportional share of resident memory (Pss): pages the cluster's forked
    processes share count once across them, not once in each, as plain RSS would."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_user():
    """The benches' API client. Throttles, fair queuing and budgets are not what they
    measure: it is exempt from them, as staff can exempt any user."""
    user, _ = get_user_model().objects.get_or_create(username="bench")
    QuotaOverride.objects.update_or_create(
        user=user,
        defaults={
            "exempt_from_throttles": True,
            "exempt_from_budgets": True,
            "note": "The bench's API client.",
        },
    )
    return user


def _user_tokens(count: int) -> list[str]:
    """Tokens of `count` ordinary users: no exemption from throttles, budgets or the queue."""
    tokens = []
    for number in range(1, count + 1):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-user-{number}")
        QuotaOverride.objects.filter(user=user).delete()
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return tokens


def _bench_token() -> str:
    return Token.objects.get_or_create(user=bench_user())[0].key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(base: str, serve: subprocess.Popen, log: Path) -> None:
    from worker.models import WorkerHeartbeat

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise RuntimeError(f"manage.py serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                pass
        except urllib.error.HTTPError:
            pass  # it answers; the worker may not have beaten yet
        except OSError:
            time.sleep(0.2)
            continue
        if WorkerHeartbeat.objects.filter(beat_at__gte=_since(10)).exists():
            return
        time.sleep(0.2)
    raise RuntimeError(f"manage.py serve did not start within 90 s: {log.read_text()[-2000:]}")


def _since(seconds: float):
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(seconds=seconds)


def _stop(serve: subprocess.Popen) -> None:
    if serve.poll() is None:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
