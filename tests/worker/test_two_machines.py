"""Two worker clusters, as on two machines: separate process groups sharing the Redis
broker and the Redis limiter backend, against one provider. Together they stay under the
provider's limit without a storm of 429s, and a reading whose cluster is killed is finished
by the other."""

import os
import subprocess
import sys
import time

import pytest
import redis
from django.conf import settings
from django.db.models import Count

from allocation.models import LLMCall, ModelLimit
from allocation.outcomes import CallOutcome
from benchmarks.workers import WorkerCluster, database_url
from readings.models import Reading, ReadingStatus
from readings.services import reading_create
from tests.polling import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# The limiter's tests' Redis database, flushed around this test too.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RPM = 120
READINGS = 8


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not answering at {REDIS_URL} ({exc})", pytrace=False)
    client.flushdb()
    yield {"Q_REDIS_URL": REDIS_URL, "LLM_LIMITER_REDIS_URL": REDIS_URL}
    client.flushdb()
    client.close()


def enqueue_on_redis(reading_ids: list[str], env: dict) -> None:
    """Queue the readings as a web process configured for the Redis broker would."""
    code = (
        "from worker.queue import enqueue_reading\n"
        f"for pk in {reading_ids!r}:\n"
        "    enqueue_reading(pk)\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url(), **env},
        check=True,
        capture_output=True,
    )


def test_two_clusters_share_the_limit_and_one_finishes_the_readings_of_the_other(
    emulator, shared_redis, tmp_path
):
    emulator.configure(rpm=RPM, ttft_ms=800, ms_per_token=2)
    ModelLimit.objects.update(requests_per_minute=RPM)
    clusters = [
        WorkerCluster(
            workers=1,
            base_url=emulator.base_url,
            # A few readings per process, so that each cluster gets its share at once
            # (a full worker hands a job back after WORKER_SLOT_WAIT_S).
            extra_env={**shared_redis, "WORKER_CONCURRENCY": "3", "WORKER_SLOT_WAIT_S": "1"},
            log_path=tmp_path / f"cluster-{name}.log",
        )
        for name in ("a", "b")
    ]
    first, second = clusters
    try:
        readings = [
            reading_create(spread="three_card", question=f"Question {i}") for i in range(READINGS)
        ]
        enqueue_on_redis([str(r.pk) for r in readings], shared_redis)

        # Both clusters take readings from the one queue and call the provider.
        def both_clusters_call():
            return LLMCall.objects.values("holder").distinct().count() == 2

        wait_for(
            both_clusters_call,
            timeout=60,
            what="both clusters to run readings",
            explain=lambda: first.output() + second.output(),
        )
        victim_pid = first.process.pid
        victims = {
            str(pk)
            for pk, held_by in Reading.objects.exclude(held_by="").values_list("pk", "held_by")
            if not _belongs_to(held_by, second.process.pid)
        }
        assert victims, "the first cluster holds readings when it is killed"
        first.kill()
        killed_at = time.monotonic()

        wait_for(
            lambda: Reading.objects.filter(status=ReadingStatus.DONE).count() == READINGS,
            timeout=90,
            what="every reading, the killed cluster's too, to be done by the other",
            explain=second.output,
        )
        print(f"\nall done {time.monotonic() - killed_at:.1f} s after the kill of {victim_pid}")
        answered = LLMCall.objects.filter(outcome=CallOutcome.OK)
        # The killed cluster's readings were finished by the surviving one.
        finished_by_survivor = {
            str(pk)
            for pk, holder in answered.values_list("reading_id", "holder")
            if _belongs_to(holder, second.process.pid)
        }
    finally:
        for cluster in clusters:
            if cluster.process.poll() is None:
                cluster.stop()

    calls = LLMCall.objects.exclude(outcome=CallOutcome.PENDING)
    rate_limited = calls.filter(outcome=CallOutcome.RATE_LIMITED).count()
    # One shared limit, two clusters: no storm of 429s.
    assert rate_limited <= max(1, 0.01 * calls.count())
    senders = calls.values("holder").annotate(n=Count("id"))
    assert len(senders) >= 2, "both clusters' workers sent calls"
    assert victims <= finished_by_survivor


def _belongs_to(holder: str, cluster_pid: int) -> bool:
    """Whether a live worker process ("host:pid") is in the cluster's process group."""
    pid = int(holder.rsplit(":", 1)[1])
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[2]) == cluster_pid
    except OSError:
        return False
