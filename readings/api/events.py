"""GET /api/readings/<id>/events/: a reading as it is written, as Server-Sent Events.

Events, each with an id a client may resume after (Last-Event-ID): task_started,
text (a delta of a task's text: {"task", "position", "text"}, position null outside card
batches), task_restarted (drop that task's text so far: an attempt failed and another is
coming), task_finished (with the task's final text) and reading_finished, last, with the
whole reading as GET /api/readings/<id>/ shows it. A client that connects late is first sent
every event it missed. The stream ends after reading_finished.

The view runs as an async generator on the ASGI server: a waiting stream holds a socket and
an asyncio task, no thread and no database connection (readings/live.py wakes it).
"""

import asyncio
import json
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.views import APIView

from readings.api.serializers import ReadingDetailSerializer
from readings.api.views import readings_visible_to
from readings.live import listener, sse, stream_slots
from readings.models import EventKind, Reading, ReadingEvent, ReadingStatus, ReadingTask

# A comment line this often keeps proxies from closing an idle stream, and finds clients
# that have gone away.
KEEPALIVE_S = 15.0
# Without LISTEN (SQLite, or the listener reconnecting) a stream re-reads this often.
POLL_S = 0.5
# Read at most this many events at a time, so a late client's backlog is sent in pieces.
BATCH = 500
# A stream slot frees when one of the user's streams ends (its reading finished, or its tab
# closed): worth asking again after a few seconds.
STREAM_SLOT_RETRY_S = 5


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets clients ask for text/event-stream; an error then arrives as one `error` event."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return f"event: error\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class ReadingEvents(APIView):
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        summary="Follow a reading as it is written (Server-Sent Events)",
        description=__doc__,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                location=OpenApiParameter.HEADER,
                required=False,
                description="Resume after this event id (browsers send it on reconnecting).",
            )
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(description="The event stream."),
            404: OpenApiResponse(description="No such reading, or not yours."),
            429: OpenApiResponse(description="Too many open streams: close one first."),
        },
    )
    def get(self, request, pk):
        reading = readings_visible_to(request.user).filter(pk=pk).first()
        if reading is None:
            raise NotFound()
        last_id = _last_event_id(request)
        limit = settings.READING_STREAMS_PER_USER
        if not stream_slots.take(request.user.pk, limit):
            raise Throttled(
                wait=STREAM_SLOT_RETRY_S,
                detail=_("You have %(limit)d reading streams open already; close one first.")
                % {"limit": limit},
            )
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                stream_slots.give_back(request.user.pk)

        response = StreamingHttpResponse(
            _stream(reading.pk, last_id, release), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        response._resource_closers.append(release)
        return response


def _last_event_id(request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0


async def _stream(reading_id, last_id: int, release):
    waiter = listener.subscribe(reading_id)
    # A stream ends after a while even if its reading has not (a reading may wait in the
    # queue for long): the client reconnects with Last-Event-ID and misses nothing, and a
    # server that is shutting down is not held open by streams that never end.
    ends_at = time.monotonic() + settings.READING_STREAM_MAX_S
    try:
        yield "retry: 1000\n\n"
        idle_s = 0.0
        first = True
        while time.monotonic() < ends_at:
            waiter.clear()  # before reading: a NOTIFY from now on wakes the wait below
            events = await _events_after(reading_id, last_id)
            if first and not events and (reading := await _if_ended(reading_id)) is not None:
                # Resumed at or past the end (its events are compacted away): the end again.
                yield sse(None, EventKind.READING_FINISHED, reading)
                return
            first = False
            for event in events:
                last_id = event.id
                if event.kind == EventKind.READING_FINISHED:
                    reading = await _reading_payload(reading_id)
                    yield sse(event, event.kind, {**event.data, "reading": reading})
                    return
                yield sse(event, event.kind, event.data)
            if len(events) == BATCH:
                continue
            timeout = KEEPALIVE_S if listener.connected else POLL_S
            timeout = max(0.0, min(timeout, ends_at - time.monotonic()))
            try:
                await asyncio.wait_for(waiter.wait(), timeout)
                idle_s = 0.0
            except TimeoutError:
                idle_s += timeout
                if idle_s >= KEEPALIVE_S:
                    idle_s = 0.0
                    yield ": keepalive\n\n"
    finally:
        listener.unsubscribe(reading_id, waiter)
        release()


@sync_to_async
def _events_after(reading_id, last_id: int) -> list[ReadingEvent]:
    try:
        return list(
            ReadingEvent.objects.filter(reading_id=reading_id, id__gt=last_id).order_by("id")[
                :BATCH
            ]
        )
    finally:
        # A waiting stream keeps no database connection (there may be many streams).
        connection.close()


@sync_to_async
def _if_ended(reading_id) -> dict | None:
    """A reading_finished event's data for a reading that has ended, else None."""
    try:
        ended = (
            Reading.objects.filter(
                pk=reading_id, status__in=[ReadingStatus.DONE, ReadingStatus.FAILED]
            )
            .values("status", "error")
            .first()
        )
    finally:
        connection.close()
    if ended is None:
        return None
    return {**ended, "reading": _reading_data(reading_id)}


def _reading_data(reading_id) -> dict:
    try:
        reading = (
            Reading.objects.select_related("spread")
            .prefetch_related(
                Prefetch(
                    "tasks", queryset=ReadingTask.objects.order_by("phase", "batch_index", "pk")
                )
            )
            .get(pk=reading_id)
        )
        return ReadingDetailSerializer(reading).data
    finally:
        close_old_connections()
        connection.close()


_reading_payload = sync_to_async(_reading_data)
