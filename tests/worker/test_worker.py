"""Readings run by real qcluster processes: through the API, and across a worker's SIGKILL."""

import pytest
from rest_framework.test import APIClient

from allocation.models import LLMCall
from benchmarks.workers import WorkerCluster
from readings.models import Reading, ReadingStatus, TaskStatus
from readings.services import reading_create
from tests.polling import wait_for
from worker.queue import enqueue_reading

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# A job is redelivered `retry` seconds after a worker took it; short here so the crash test
# finishes quickly, and still above `timeout` as in production.
WORKER_TIMEOUT_S, WORKER_RETRY_S = 8, 10


@pytest.fixture
def qcluster_factory(emulator, tmp_path):
    started = []

    def start():
        cluster = WorkerCluster(
            workers=1,
            base_url=emulator.base_url,
            extra_env={"Q_TIMEOUT_S": str(WORKER_TIMEOUT_S), "Q_RETRY_S": str(WORKER_RETRY_S)},
            log_path=tmp_path / f"qcluster-{len(started)}.log",
        )
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        if cluster.process.poll() is None:
            cluster.stop()


def test_it_runs_a_reading_created_through_the_api_on_the_worker(emulator, bob, qcluster_factory):
    cluster = qcluster_factory()
    api = APIClient()
    api.force_authenticate(bob)

    created = api.post(
        "/api/readings/", {"spread": "three_card", "question": "What next?"}, format="json"
    )
    assert created.status_code == 202
    reading_id = created.json()["id"]

    wait_for(
        lambda: Reading.objects.get(pk=reading_id).status == ReadingStatus.DONE,
        timeout=60,
        explain=cluster.output,
        what="the reading to finish",
    )
    body = api.get(f"/api/readings/{reading_id}/").json()
    assert body["status"] == "done"
    assert body["results"]["advice"]
    assert all(card["text"] for card in body["results"]["cards"])
    assert float(body["cost_usd"]) > 0


def test_a_worker_killed_mid_reading_loses_nothing_and_pays_for_no_task_twice(
    emulator, qcluster_factory
):
    # Slow calls, so the kill lands between phases.
    emulator.configure(ttft_ms=700, ms_per_token=1)
    reading = reading_create(spread="celtic_cross", question="Will the move go well?")
    enqueue_reading(reading.pk)
    first = qcluster_factory()

    def some_but_not_all_tasks_done():
        done = reading.tasks.filter(status=TaskStatus.DONE).count()
        return 0 < done < 7

    wait_for(
        some_but_not_all_tasks_done, timeout=60, explain=first.output, what="phase 1 to finish"
    )
    first.kill()
    done_before = {
        task.pk: LLMCall.objects.filter(task=task).count()
        for task in reading.tasks.filter(status=TaskStatus.DONE)
    }
    assert Reading.objects.get(pk=reading.pk).status == ReadingStatus.RUNNING

    second = qcluster_factory()
    wait_for(
        lambda: Reading.objects.get(pk=reading.pk).status == ReadingStatus.DONE,
        timeout=WORKER_RETRY_S + 60,
        explain=second.output,
        what="the redelivered job to finish the reading",
    )

    reading.refresh_from_db()
    assert reading.attempts == 2
    assert reading.tasks.filter(status=TaskStatus.DONE).count() == 7
    for task_id, calls in done_before.items():
        assert LLMCall.objects.filter(task_id=task_id).count() == calls, "a finished task ran again"
