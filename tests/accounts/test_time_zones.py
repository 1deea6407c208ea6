"""A reader's pages show times in their own time zone, which their browser reports."""

from datetime import UTC, datetime

import pytest

from accounts.models import Profile
from readings.models import Reading
from readings.services import reading_create

pytestmark = pytest.mark.django_db


def test_the_browsers_time_zone_is_stored_and_dates_the_readers_pages(client, bob):
    reading = reading_create(owner=bob, spread="three_card", question="When?")
    Reading.objects.filter(pk=reading.pk).update(
        created_at=datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
    )
    client.force_login(bob)
    assert "2026-12-07 01:30 UTC" in client.get(f"/readings/{reading.pk}/").content.decode()

    response = client.post("/accounts/time-zone/", {"time_zone": "Asia/Seoul"})

    assert response.status_code == 204
    assert Profile.objects.get(user=bob).time_zone == "Asia/Seoul"
    assert "2026-12-07 10:30 KST" in client.get(f"/readings/{reading.pk}/").content.decode()
    assert "2026-12-07 10:30 KST" in client.get("/").content.decode()  # the history


def test_a_time_zone_that_does_not_exist_is_refused_with_a_message(client, bob):
    client.force_login(bob)
    response = client.post("/accounts/time-zone/", {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    assert "not a known time zone" in response.json()["time_zone"]
    assert not Profile.objects.filter(user=bob, time_zone__gt="").exists()


def test_only_a_signed_in_reader_stores_a_time_zone(client):
    assert client.post("/accounts/time-zone/", {"time_zone": "Asia/Seoul"}).status_code == 403
    assert client.get("/accounts/time-zone/").status_code == 405
