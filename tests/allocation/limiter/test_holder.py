"""Leases belong to the process that holds them, read after django-q2 forks its workers: a
worker killed inside a real qcluster loses its slots within the lease's lifetime, while its
siblings, alive, keep theirs."""

import os
import signal
import time

import pytest

from allocation.models import ModelAllocation, ModelLimit
from benchmarks.workers import WorkerCluster
from readings.services import reading_create
from tests.polling import wait_for
from worker.queue import enqueue_reading

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MODEL = "claude-haiku-5-5"
LEASE_TTL_S = 2.0


def test_a_killed_forked_worker_s_slots_return_within_the_lease_ttl_while_siblings_keep_theirs(
    emulator, backend, backend_env, tmp_path
):
    ModelAllocation.objects.update(model=MODEL, fallback_models="")
    ModelLimit.objects.update(max_concurrent_calls=20)
    emulator.configure(hang_rate=1.0)  # calls never answer: each worker holds its slots
    cluster = WorkerCluster(
        workers=2,
        base_url=emulator.base_url,
        extra_env={
            "LLM_LEASE_TTL_S": str(int(LEASE_TTL_S)),
            # One reading per worker process, so each of the two holds slots: a full
            # worker hands the second job back at once, for its sibling.
            "WORKER_CONCURRENCY": "1",
            "WORKER_SLOT_WAIT_S": "1",
            # Nothing is redelivered or timed out while the test watches.
            "Q_TIMEOUT_S": "120",
            "Q_RETRY_S": "150",
            **backend_env,
        },
        log_path=tmp_path / "qcluster.log",
    )
    try:
        for question in ("One?", "Two?"):
            enqueue_reading(reading_create(spread="celtic_cross", question=question).pk)

        def holders(at=None):
            """Each process's unexpired leases at `at` (now if None)."""
            return backend.holders(MODEL, now=time.time() if at is None else at)

        # Each worker runs one reading, whose four card batches all go out at once.
        wait_for(
            lambda: list(holders().values()) == [4, 4],
            timeout=90,
            what="both forked workers to hold four slots each, each under its own pid",
            explain=cluster.output,
        )
        held = holders()
        victim, sibling = sorted(held)
        victim_pid = int(victim.rsplit(":", 1)[1])
        assert victim_pid != cluster.process.pid, "a forked worker, not the cluster itself"

        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.time()
        wait_for(
            lambda: victim not in holders(),
            timeout=LEASE_TTL_S + 5,
            what="the killed worker's slots to come back",
        )
        returned_at = time.time()
        assert returned_at - killed_at <= LEASE_TTL_S + 1.0

        # The sibling renews its own: its leases, as they stood now, expire by
        # returned_at + LEASE_TTL_S, so leases still live past that are renewed ones.
        past_their_expiry = returned_at + LEASE_TTL_S + 0.5
        wait_for(
            lambda: holders(at=past_their_expiry).get(sibling) == 4,
            timeout=LEASE_TTL_S + 5,
            what="the live sibling to renew its four leases past their expiry",
            explain=lambda: f"held at {past_their_expiry}: {holders(at=past_their_expiry)}",
        )
        now_held = holders()
        assert now_held[sibling] == 4
        # (The killed worker's reading may already be resumed by its replacement, under the
        # replacement's own pid: recovery hands the job back in seconds.)
        assert victim not in now_held
    finally:
        cluster.kill()  # its calls hang: no point waiting for a clean stop
