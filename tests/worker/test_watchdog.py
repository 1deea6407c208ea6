"""The watchdog thread every worker process runs: its heartbeat is what /healthz reads."""

from datetime import timedelta

import pytest
from django.utils import timezone

from worker import heartbeats
from worker.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_a_beat_records_this_process_and_forgets_day_old_ones(client, alice):
    WorkerHeartbeat.objects.create(holder="gone:1", beat_at=timezone.now() - timedelta(days=2))

    heartbeats.beat()

    assert list(WorkerHeartbeat.objects.values_list("holder", flat=True)) == [heartbeats.holder()]
    client.force_login(alice)
    assert client.get("/healthz").json()["checks"]["workers"]["ok"] is True
