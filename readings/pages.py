"""The reading page: a signed-in reader asks a question, watches the reading being written
(readings/static/readings/reading.js follows the API's event stream) and finds it later in
their history. Costs and model names stay out of it; they are staff business."""

import math
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import get_language_info, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from budgets.services import BudgetExceeded
from budgets.throttles import reading_creation_wait
from readings.languages import reading_language
from readings.models import Language, Reading, ReadingMode, ReadingStatus
from readings.queue_place import QueuePlace, queue_place
from readings.selectors import reading_results
from readings.services import (
    MAX_QUESTION_LENGTH,
    RetryRefused,
    reading_create,
    reading_retry,
    submit,
)
from spreads.layout import layout_of
from spreads.models import Spread
from spreads.selectors import spread_positions

HISTORY_LENGTH = 50


# What the page says when creating (or finishing) a reading is refused.
def too_many(wait_s: float) -> str:
    """When the reader may ask again: in seconds when it is soon, else at a time of day in
    their own time zone (accounts/time_zones.py), labelled."""
    if wait_s < 60:
        return _("You have asked for many readings just now. Ask again in %(seconds)d seconds.") % {
            "seconds": math.ceil(wait_s)
        }
    again = timezone.localtime(timezone.now() + timedelta(seconds=math.ceil(wait_s)))
    return _("You have asked for many readings just now. Ask again at %(time)s.") % {
        "time": date_format(again, "H:i T")
    }


def queued_text(place: QueuePlace) -> str:
    """A queued reading's place in the line, and roughly when it should start."""
    if place.expected_start_at is None:
        return _("Queued: number %(position)d in line.") % {"position": place.position}
    minutes = max(1, math.ceil((place.expected_start_at - timezone.now()).total_seconds() / 60))
    return ngettext(
        "Queued: number %(position)d in line, expected to start in about %(minutes)d minute.",
        "Queued: number %(position)d in line, expected to start in about %(minutes)d minutes.",
        minutes,
    ) % {"position": place.position, "minutes": minutes}


def over_budget() -> str:
    return _("No more readings can be made today. Try again tomorrow.")


@login_required(login_url="accounts:login")
def home(request):
    errors: dict[str, list[str]] = {}
    # A link may ask the question again ("Ask this question again" on a failed reading).
    form = {
        "spread": request.GET.get("spread", ""),
        "question": request.GET.get("question", ""),
        "language": (
            request.GET["language"]
            if request.GET.get("language") in Language.values
            else reading_language(request)
        ),
    }
    wait_s = 0.0
    if request.method == "POST":
        form.update(
            spread=request.POST.get("spread", ""),
            question=request.POST.get("question", ""),
            language=request.POST.get("language", ""),
        )
        wait_s = reading_creation_wait(request.user)
    if wait_s:
        errors = {"__all__": [too_many(wait_s)]}
    elif request.method == "POST":
        try:
            reading = reading_create(
                owner=request.user,
                spread=form["spread"],
                question=form["question"],
                language=reading_language(request, form["language"] or None),
                submitted=True,
            )
        except ValidationError as exc:
            errors = exc.message_dict
        except BudgetExceeded:
            errors = {"__all__": [over_budget()]}
        else:
            return redirect("pages:reading", pk=reading.pk)
    response = render(
        request,
        "pages/home.html",
        {
            "spreads": Spread.objects.filter(is_active=True).prefetch_related("positions", "texts"),
            "languages": [get_language_info(code) for code in Language.values],
            "form": form,
            "errors": errors,
            "max_question_length": MAX_QUESTION_LENGTH,
            "history": Reading.objects.filter(owner=request.user)
            .select_related("spread")
            .prefetch_related("spread__texts")
            .order_by("-created_at")[:HISTORY_LENGTH],
        },
        status=429 if wait_s else 400 if errors else 200,
    )
    if wait_s:
        response["Retry-After"] = str(math.ceil(wait_s))
    return response


@login_required(login_url="accounts:login")
def reading_page(request, pk):
    # Someone else's reading is not found, as in the API.
    reading = get_object_or_404(
        # The spread's own words in the page's language, read once (spreads/display.py).
        Reading.objects.select_related("spread").prefetch_related("spread__texts"),
        pk=pk,
        owner=request.user,
    )
    finished = reading.status in (ReadingStatus.DONE, ReadingStatus.FAILED)
    place = queue_place(reading)
    results = reading_results(reading)
    layout = layout_of(spread_positions(reading.spread))
    return render(
        request,
        "pages/reading.html",
        {
            "reading": reading,
            "results": results,
            # The cards where they lie on the table, each linking to its text.
            "spread_map": [
                {**card, "place": layout.place_of(card["index"])}
                for card in results["cards"]
                if layout.place_of(card["index"])
            ],
            "layout": layout,
            "finished": finished,
            "retryable": reading.mode == ReadingMode.STANDARD,
            "queued": place and queued_text(place),
            "events_url": "" if finished else reverse("api:reading-events", kwargs={"pk": pk}),
        },
    )


@login_required(login_url="accounts:login")
@require_POST
def retry(request, pk):
    """The reading page's retry button: the API's retry, under the same throttle."""
    reading = get_object_or_404(Reading, pk=pk, owner=request.user)
    if wait_s := reading_creation_wait(request.user):
        messages.error(request, too_many(wait_s))
        return redirect("pages:reading", pk=pk)
    try:
        reading = reading_retry(reading)
    except RetryRefused as exc:
        messages.error(request, str(exc))
    except BudgetExceeded:
        messages.error(request, over_budget())
    else:
        submit(reading)
    return redirect("pages:reading", pk=pk)
