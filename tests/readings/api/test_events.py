"""GET /api/readings/<id>/events/: a reading as Server-Sent Events, served by uvicorn (the
ASGI app in its own process, as in production), fed by the engine through Postgres."""

import json
import threading
import time

import httpx2
import pytest
from django.db import connection, connections
from rest_framework.authtoken.models import Token

from benchmarks.workers import WebServer
from readings.engine import run_reading_sync
from readings.models import EventKind, Reading, ReadingEvent, ReadingStatus
from readings.services import reading_create
from tests.polling import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(scope="module")
def web(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        with WebServer(
            extra_env={
                "READING_STREAMS_PER_USER": "2",
                "READING_STREAM_MAX_S": "8",
                # Its sessions, pooled and listening, by name in pg_stat_activity.
                "DB_APPLICATION_NAME": WEB_SESSIONS,
                "PGAPPNAME": WEB_SESSIONS,
            }
        ) as server:
            yield server
        # Its sessions end when Postgres notices the process has gone: wait, so the test
        # database can be dropped.
        wait_for(
            lambda: not web_sessions(),
            timeout=10,
            what="the web server's database sessions to end",
            explain=lambda: f"still open: {web_sessions()}",
        )


WEB_SESSIONS = "tarot-test-events-web"


def web_sessions() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [WEB_SESSIONS],
        )
        return cursor.fetchall()


def client(web, user) -> httpx2.Client:
    token, _ = Token.objects.get_or_create(user=user)
    return httpx2.Client(
        base_url=web.url, headers={"Authorization": f"Token {token.key}"}, timeout=30
    )


def events(response, on_open=lambda: None):
    """(id, event, data) as they arrive. on_open() is called once the server's first line
    (its retry advice) is in: from then on the stream is listening for the reading."""
    event_id, kind, data = None, None, []
    opened = False
    for line in response.iter_lines():
        if not opened:
            opened = True
            on_open()
        if line == "":
            if data:
                yield event_id, kind, json.loads("\n".join(data))
            event_id, kind, data = None, None, []
        elif line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


def watcher_thread(target) -> threading.Thread:
    """A viewer on a thread of its own, which gives its database connection back when done
    (a thread's connection outlives the thread otherwise, and the pool runs dry)."""

    def watch():
        try:
            target()
        finally:
            connections.close_all()

    return threading.Thread(target=watch)


def follow(http, reading, **headers) -> list:
    with http.stream("GET", f"/api/readings/{reading.pk}/events/", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(events(response))


def new_reading(owner):
    return reading_create(owner=owner, spread="three_card", question="Is the river rising?")


def test_a_late_client_gets_the_whole_reading_at_once(web, bob, emulator):
    reading = run_reading_sync(new_reading(bob).pk)

    with client(web, bob) as http:
        received = follow(http, reading)

    # The reading's text lives in its tasks: its live events were compacted as it ended.
    [(_, kind, last)] = received
    assert kind == EventKind.READING_FINISHED
    assert last["reading"]["status"] == ReadingStatus.DONE
    cards = last["reading"]["results"]["cards"]
    assert len(cards) == 3 and all(card["text"] for card in cards)
    assert last["reading"]["results"]["advice"]


def test_a_client_watching_live_sees_text_before_the_reading_ends(web, bob, emulator):
    emulator.configure(ttft_ms=300, ms_per_token=3)
    reading = new_reading(bob)
    seen_at = {}
    connected = threading.Event()

    def watch():
        url = f"/api/readings/{reading.pk}/events/"
        with client(web, bob) as http, http.stream("GET", url) as response:
            for _, kind, _ in events(response, on_open=connected.set):
                seen_at.setdefault(kind, time.time())

    watcher = watcher_thread(watch)
    watcher.start()
    wait_for(connected.is_set, timeout=15, what="the watcher's stream to open")
    assert seen_at == {}  # connected, nothing to see yet
    run_reading_sync(reading.pk)
    watcher.join(timeout=30)

    reading.refresh_from_db()
    assert seen_at[EventKind.TEXT] < reading.finished_at.timestamp()
    assert EventKind.READING_FINISHED in seen_at


def test_a_client_resumes_after_the_last_event_it_saw(web, bob, emulator):
    emulator.configure(ttft_ms=300, ms_per_token=3)
    reading = new_reading(bob)
    first: list = []
    connected = threading.Event()

    def watch_a_little():
        url = f"/api/readings/{reading.pk}/events/"
        with client(web, bob) as http, http.stream("GET", url) as response:
            for event in events(response, on_open=connected.set):
                first.append(event)
                if len(first) == 3:
                    return  # the connection drops

    watcher = watcher_thread(watch_a_little)
    watcher.start()
    wait_for(connected.is_set, timeout=15, what="the watcher's stream to open")
    run_reading_sync(reading.pk)
    watcher.join(timeout=30)

    with client(web, bob) as http:
        rest = follow(http, reading, **{"Last-Event-ID": str(first[-1][0])})

    ids = [i for i, _, _ in first + rest]
    assert len(first) == 3
    assert ids == sorted(set(ids))  # nothing twice, nothing out of order
    assert rest[-1][1] == EventKind.READING_FINISHED
    assert rest[-1][2]["reading"]["status"] == ReadingStatus.DONE


def test_a_client_resuming_past_a_finished_readings_last_event_is_told_it_ended(web, bob, emulator):
    reading = run_reading_sync(new_reading(bob).pk)

    with client(web, bob) as http:
        [(finished_id, _, _)] = follow(http, reading)
        received = follow(http, reading, **{"Last-Event-ID": str(finished_id + 1000)})

    # Not a stream left open until READING_STREAM_MAX_S: the end, again, and the stream ends.
    [(_, kind, data)] = received
    assert kind == EventKind.READING_FINISHED
    assert data["status"] == ReadingStatus.DONE and data["reading"]["results"]["advice"]


def test_someone_elses_reading_is_not_found(web, bob, charlie, alice, emulator):
    reading = new_reading(bob)

    with client(web, charlie) as http:
        assert http.get(f"/api/readings/{reading.pk}/events/").status_code == 404
    with httpx2.Client(base_url=web.url) as anonymous:
        assert anonymous.get(f"/api/readings/{reading.pk}/events/").status_code in (401, 403)
    Reading.objects.filter(pk=reading.pk).update(status=ReadingStatus.FAILED)
    ReadingEvent.objects.create(reading=reading, kind=EventKind.READING_FINISHED, data={})
    with client(web, alice) as http:  # staff
        assert follow(http, reading)[-1][1] == EventKind.READING_FINISHED


def test_a_user_has_a_bounded_number_of_open_streams(web, bob, emulator):
    waiting = [new_reading(bob) for _ in range(3)]  # queued: their streams stay open

    with client(web, bob) as http:
        first = http.stream("GET", f"/api/readings/{waiting[0].pk}/events/")
        second = http.stream("GET", f"/api/readings/{waiting[1].pk}/events/")
        with first as one, second as two:
            assert one.status_code == two.status_code == 200
            refused = http.get(f"/api/readings/{waiting[2].pk}/events/")
            assert refused.status_code == 429
            assert "2 reading streams open" in refused.json()["detail"]
            assert int(refused.headers["Retry-After"]) > 0

        def opens():
            with http.stream("GET", f"/api/readings/{waiting[2].pk}/events/") as again:
                return again.status_code == 200

        # Closed streams give their places back (once the server has seen them close).
        wait_for(opens, timeout=10, what="a closed stream's place to be given back")


def test_a_client_that_hangs_up_costs_the_worker_nothing(web, bob, emulator):
    emulator.configure(ttft_ms=200, ms_per_token=3)
    reading = new_reading(bob)

    def hang_up_early():
        url = f"/api/readings/{reading.pk}/events/"
        with client(web, bob) as http, http.stream("GET", url) as response:
            for _, kind, _ in events(response):
                if kind == EventKind.TEXT:
                    return  # gone mid-reading

    watcher = watcher_thread(hang_up_early)
    watcher.start()
    finished = run_reading_sync(reading.pk)
    watcher.join(timeout=30)

    assert finished.status == ReadingStatus.DONE
    assert finished.calls == 4  # no retries: the worker never noticed


def test_a_long_wait_ends_the_stream_and_the_client_resumes_where_it_was(web, bob, emulator):
    reading = new_reading(bob)  # queued: nothing happens for a while
    started = time.monotonic()

    with client(web, bob) as http:
        assert follow(http, reading) == []  # ended by the server, not by the reading
        assert 7 < time.monotonic() - started < 12
        run_reading_sync(reading.pk)
        received = follow(http, reading, **{"Last-Event-ID": "0"})

    assert received[-1][1] == EventKind.READING_FINISHED
