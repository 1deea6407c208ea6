"""Budgets hold across processes: a race between two of them, and a worker's SIGKILL."""

import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.conf import settings

from allocation.models import LLMCall
from benchmarks.workers import WorkerCluster, database_url
from budgets.models import Reservation, ReservationState
from budgets.selectors import standing
from readings.models import Reading, ReadingStatus, TaskStatus
from readings.services import reading_create
from tests.budgets.three_cards import admission_of_three_cards
from tests.polling import wait_for
from worker.queue import enqueue_reading

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_twenty_creations_in_two_processes_against_room_for_five_accept_exactly_five(
    bob, budget_for
):
    asks = admission_of_three_cards(bob)
    # The fifth admission needs its largest phase's room beside four claims; a sixth does not
    # find it.
    budget = budget_for(user=bob, limit=asks.expected_usd * Decimal("4.5") + asks.room_usd)
    start_at = time.time() + 3  # both processes set up, then fire together
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.budgets.create_readings",
                str(bob.pk),
                "10",
                str(start_at),
            ],
            cwd=settings.BASE_DIR,
            env={**os.environ, "DATABASE_URL": database_url(), "LOG_LEVEL": "WARNING"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
        outcomes.append(json.loads(out.decode().strip().splitlines()[-1]))

    assert sum(o["accepted"] for o in outcomes) == 5
    assert sum(o["refused"] for o in outcomes) == 15
    assert Reading.objects.filter(owner=bob).count() == 5
    assert standing(budget).reserved_usd == asks.expected_usd * 5


def test_a_killed_workers_reading_keeps_its_reservation_and_settles_when_it_resumes(
    emulator, bob, budget_for, tmp_path
):
    emulator.configure(ttft_ms=700, ms_per_token=1)  # slow calls: the kill lands mid-reading
    budget = budget_for(user=bob, limit=Decimal(5))
    reading = reading_create(owner=bob, spread="celtic_cross", question="Will it hold?")
    enqueue_reading(reading.pk)
    # A job is redelivered `retry` s after a worker took it; above `timeout`, as in
    # production, and roomy enough for a loaded machine to finish the reading in one attempt.
    env = {"Q_TIMEOUT_S": "20", "Q_RETRY_S": "25"}
    first = WorkerCluster(
        workers=1, base_url=emulator.base_url, extra_env=env, log_path=tmp_path / "first.log"
    )
    second = None
    try:
        wait_for(
            lambda: 0 < reading.tasks.filter(status=TaskStatus.DONE).count() < 7,
            timeout=60,
            explain=first.output,
            what="some of the reading's tasks to finish",
        )
        first.kill()
        spent_before = standing(budget).spent_usd
        held = Reservation.objects.get(reading=reading)
        assert held.state == ReservationState.HELD
        assert spent_before > 0
        assert held.spent_usd == spent_before
        # Its claim stays: the phase it was in, less what that phase spent, or what it is
        # still expected to spend.
        assert standing(budget).reserved_usd == held.claim_usd > 0

        second = WorkerCluster(
            workers=1, base_url=emulator.base_url, extra_env=env, log_path=tmp_path / "second.log"
        )
        wait_for(
            lambda: Reading.objects.get(pk=reading.pk).status == ReadingStatus.DONE,
            timeout=150,
            explain=second.output,
            what="the redelivered job to finish the reading",
        )
    finally:
        for cluster in (first, second):
            if cluster is not None and cluster.process.poll() is None:
                cluster.stop()

    reading.refresh_from_db()
    calls_cost = sum(c.cost_usd for c in LLMCall.objects.filter(reading=reading))
    assert reading.cost_usd == calls_cost
    assert standing(budget).spent_usd == calls_cost
    assert standing(budget).reserved_usd == 0
    released = Reservation.objects.get(reading=reading)
    assert released.state == ReservationState.RELEASED
    assert released.spent_usd == calls_cost
