"""What a locked-out sign-in is told (django-axes' AXES_LOCKOUT_CALLABLE): when to try again,
in the reader's language, as JSON on the API and as a page elsewhere, with Retry-After."""

import math

from axes.helpers import get_cool_off
from axes.middleware import AxesMiddleware
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import ngettext


def locked_out(request, original_response=None, credentials=None):
    # Each failure during a lockout restarts it (axes' default), so the whole cool-off is the
    # honest wait.
    wait_s = int(get_cool_off(request).total_seconds())
    minutes = math.ceil(wait_s / 60)
    message = ngettext(
        "Too many failed sign-ins. Try again in %(minutes)d minute.",
        "Too many failed sign-ins. Try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "accounts/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(wait_s)
    return response


class LockoutMiddleware(AxesMiddleware):
    """django-axes' middleware, run in the same (synchronous) mode as the rest of the stack.

    Axes' own can run either way, so under ASGI Django ran it, and the two middlewares
    inside it, as coroutines between the synchronous ones: every request crossed from a
    thread to the event loop and back six times instead of three (a burst of 120 readings
    on the web server alone was acknowledged about 5% later)."""

    async_capable = False
