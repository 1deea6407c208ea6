"""Live readings: the worker's events reach the web process's event streams.

The worker writes a reading's new events as ReadingEvent rows and, in the same statement,
sends Postgres a NOTIFY on one channel with the reading's id: text of all its tasks together, a
few times a second (ReadingPublisher), and the events of every reading the process runs in
one write (LiveWriter). When the reading ends its events are deleted
(compact): the reading_finished event, written last, carries the whole reading. Each web
process holds one LISTEN connection (not one per stream) and wakes the streams of that reading,
which read the new rows.

Why Postgres LISTEN/NOTIFY rather than Redis pub/sub: the events must be stored anyway (a
late or reconnecting client is sent what it missed, from the rows), and a NOTIFY is
delivered only when the transaction that wrote the rows commits, so a stream never wakes
before it can read them, and no event exists in one system but not the other. Postgres is
already required; Redis is optional here. A lost notification (the listener reconnecting)
costs only latency: streams re-read the table on every wake-up and at least every few seconds.
Without Postgres (the SQLite default of `make run`), streams poll the table.
"""

import asyncio
import json
import logging
import math
import threading
import time
from collections import defaultdict

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from readings.models import EventKind, ReadingEvent

logger = logging.getLogger(__name__)

CHANNEL = "reading_events"
# How long text may wait before it is written: a few writes a second per reading, not one per
# token or per task. The reading's first text is written at once (time to first text).
FLUSH_INTERVAL_S = 0.25


# --- The worker's side ------------------------------------------------------------------------


def publish(reading_id, events: list[tuple[str, dict]]) -> None:
    """Store events of one reading, in order, and tell the web processes (on commit)."""
    publish_many([(reading_id, events)])


def publish_many(batches: list[tuple[object, list[tuple[str, dict]]]]) -> None:
    """Store the events of several readings, each reading's in order, and tell the web
    processes (on commit), one NOTIFY per reading.

    On Postgres that is one statement, so one round trip: its insert and its NOTIFYs commit
    together (or with the caller's transaction)."""
    if not any(events for _, events in batches):
        return
    if connection.vendor != "postgresql":
        with transaction.atomic():
            ReadingEvent.objects.bulk_create(
                ReadingEvent(reading_id=reading_id, kind=kind, data=data)
                for reading_id, events in batches
                for kind, data in events
            )
        return
    with connection.cursor() as cursor:
        cursor.execute(*publishing(batches))


def publishing(batches: list[tuple[object, list[tuple[str, dict]]]]) -> tuple[str, list]:
    """publish_many on Postgres as one SQL statement (and its parameters), for a caller that
    sends it along with other statements in one message. The events travel as one JSON
    document: quoting one string costs a fifth of quoting three arrays element by element,
    and a worker publishes several times a second per reading."""
    rows = [
        {"reading_id": str(reading_id), "kind": kind, "data": data}
        for reading_id, events in batches
        for kind, data in events
    ]
    sql = f"""
        WITH stored AS (
            INSERT INTO {ReadingEvent._meta.db_table} (reading_id, kind, data, created_at)
            SELECT event.reading_id::uuid, event.kind, event.data, now()
            FROM ROWS FROM (
                jsonb_to_recordset(%s::jsonb) AS (reading_id text, kind text, data jsonb)
            ) WITH ORDINALITY AS event(reading_id, kind, data, n)
            ORDER BY event.n
        )
        SELECT pg_notify(%s, reading_id) FROM unnest(%s::text[]) AS reading_id
    """
    return sql, [
        json.dumps(rows),
        CHANNEL,
        list(dict.fromkeys(str(reading_id) for reading_id, _ in batches)),
    ]


def compact(reading_id) -> None:
    """A reading that has ended keeps no live events: its texts live in its tasks, and the
    reading_finished event written next carries the whole reading to any late viewer."""
    ReadingEvent.objects.filter(reading_id=reading_id).delete()


def compact_and_publish(reading_id, events: list[tuple[str, dict]]) -> None:
    """compact, then publish: in one message on Postgres (every reading ends this way)."""
    if connection.vendor != "postgresql":
        compact(reading_id)
        publish(reading_id, events)
        return
    sql, params = publishing([(reading_id, events)])
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {ReadingEvent._meta.db_table} WHERE reading_id = %s;\n{sql}",
            [str(reading_id), *params],
        )


class ReadingPublisher:
    """A reading's live events, every task's together, waiting for the process's next write
    (LiveWriter): its text at most every FLUSH_INTERVAL_S (its first text at once), so a
    reading's events cost a few writes a second whatever number of its tasks are streaming.
    Every event is written within FLUSH_INTERVAL_S of being added, or by flush()."""

    def __init__(self, reading_id):
        self.reading_id = reading_id
        self._pending: list[tuple[str, dict]] = []
        self._text_written = False
        self._writer = LiveWriter.of_this_loop()

    def for_task(self, task_id) -> "TextPublisher":
        return TextPublisher(self, task_id)

    def add_text(self, task_id, key, text: str) -> None:
        # The task's latest pending event: if it is text of the same part, the text goes on
        # in it (one event per part and flush, not one per delta; other tasks' events
        # between are independent of it).
        mine = next((e for e in reversed(self._pending) if e[1].get("task") == task_id), None)
        if mine is not None and mine[0] == EventKind.TEXT and mine[1]["position"] == key:
            mine[1]["text"] += text
        else:
            self._pending.append((EventKind.TEXT, {"task": task_id, "position": key, "text": text}))
        # The reading's first text goes at once: what a viewer waits for (time to text).
        self._writer.write_soon(self, at_once=not self._text_written)
        self._text_written = True

    def add(self, kind: str, data: dict) -> None:
        self._pending.append((kind, data))
        self._writer.write_soon(self)

    def drop_text(self, task_id) -> None:
        self._pending = [
            (kind, data)
            for kind, data in self._pending
            if not (kind == EventKind.TEXT and data["task"] == task_id)
        ]

    def take(self) -> list[tuple[str, dict]]:
        pending, self._pending = self._pending, []
        return pending

    async def flush(self) -> None:
        """Write what is pending now (this reading's and, in the same write, the others')."""
        await self._writer.flush()


class LiveWriter:
    """The live events of every reading on this process's event loop, written together: one
    statement (publish_many) at most every FLUSH_INTERVAL_S, however many readings stream.
    Forty readings side by side cost four writes a second, not a hundred and sixty."""

    _of_loop: dict[int, "LiveWriter"] = {}

    @classmethod
    def of_this_loop(cls) -> "LiveWriter":
        loop = asyncio.get_running_loop()
        writer = cls._of_loop.get(id(loop))
        if writer is None or writer._loop is not loop:
            writer = cls._of_loop[id(loop)] = cls(loop)
        return writer

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = FLUSH_INTERVAL_S):
        self._loop = loop
        self._interval = interval
        self._waiting: dict[int, ReadingPublisher] = {}  # readings with events to write
        self._last_flush = -math.inf
        self._due: asyncio.TimerHandle | None = None
        self._flushing = asyncio.Lock()  # one write at a time keeps each reading's order

    def write_soon(self, reading: ReadingPublisher, *, at_once: bool = False) -> None:
        self._waiting[id(reading)] = reading
        if self._due is not None:
            if not at_once:
                return
            self._due.cancel()
        delay = 0.0 if at_once else max(0.0, self._last_flush + self._interval - time.monotonic())
        self._due = self._loop.call_later(delay, self._write_due)

    async def flush(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
        async with self._flushing:
            waiting, self._waiting = self._waiting, {}
            batches = [(r.reading_id, events) for r in waiting.values() if (events := r.take())]
            if not batches:
                return
            self._last_flush = time.monotonic()
            await sync_to_async(_publish_many)(batches)

    def _write_due(self) -> None:
        self._due = None
        asyncio.ensure_future(self._flush_logged())

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - viewers miss some text; the readings go on
            logger.exception("could not write the readings' live events")


def _publish_many(batches) -> None:
    publish_many(batches)  # looked up when called (tests record what is written)


class TextPublisher:
    """One task's text as it streams, through its reading's publisher, and a restart announced
    when an attempt that showed text fails (the client drops that text; nothing repeats)."""

    def __init__(self, reading: ReadingPublisher, task_id):
        self._reading, self.task_id = reading, task_id
        self.shown = False  # the current attempt has text on its way to viewers

    async def add(self, key, text: str) -> None:
        if text:
            self.shown = True
            self._reading.add_text(self.task_id, key, text)

    async def flush(self) -> None:
        await self._reading.flush()

    async def attempt_failed(self, reason: str) -> None:
        """Forget the failed attempt's text; if any was shown, say the task restarts."""
        self._reading.drop_text(self.task_id)
        if self.shown:
            self.shown = False
            self._reading.add(EventKind.TASK_RESTARTED, {"task": self.task_id, "reason": reason})
            await self._reading.flush()


# --- The web process's side -------------------------------------------------------------------


def sse(event: ReadingEvent | None, kind: str, data: dict) -> str:
    head = f"id: {event.id}\n" if event is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class Listener:
    """The process's one LISTEN connection, waking the streams of the reading notified."""

    def __init__(self):
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False

    def subscribe(self, reading_id) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if connection.vendor == "postgresql" and (self._task is None or self._loop is not loop):
            self._loop = loop
            self.connected = False
            self._task = loop.create_task(self._run())
        waiter = asyncio.Event()
        self._waiters[str(reading_id)].add(waiter)
        return waiter

    def unsubscribe(self, reading_id, waiter: asyncio.Event) -> None:
        waiters = self._waiters.get(str(reading_id))
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[str(reading_id)]

    async def _run(self) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**_conninfo(), autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    self._wake_all()  # whatever was written while it was not listening
                    async for note in conn.notifies():
                        for waiter in self._waiters.get(note.payload, ()):
                            waiter.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - streams poll meanwhile; try again soon
                logger.warning("reading events listener lost its connection", exc_info=True)
            self.connected = False
            self._wake_all()
            await asyncio.sleep(1.0)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()


def _conninfo() -> dict:
    db = settings.DATABASES["default"]
    info = {"dbname": db["NAME"], "user": db.get("USER") or None}
    if db.get("PASSWORD"):
        info["password"] = db["PASSWORD"]
    if db.get("HOST"):
        info["host"] = db["HOST"]
    if db.get("PORT"):
        info["port"] = str(db["PORT"])
    return info


listener = Listener()


class StreamSlots:
    """Open event streams per user in this process: each holds a socket, so a user gets a
    bound (READING_STREAMS_PER_USER), not as many as they care to open."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: dict[int, int] = defaultdict(int)

    def take(self, user_id: int, limit: int) -> bool:
        with self._lock:
            if self._open[user_id] >= limit:
                return False
            self._open[user_id] += 1
            return True

    def give_back(self, user_id: int) -> None:
        with self._lock:
            self._open[user_id] = max(0, self._open[user_id] - 1)

    def open_for(self, user_id: int) -> int:
        with self._lock:
            return self._open[user_id]


stream_slots = StreamSlots()
