"""What a locked-out sign-in is told (django-axes' AXES_LOCKOUT_CALLABLE): when to try again,
in the reader's language, as JSON on the API and as a page elsewhere, with Retry-After."""

import math

from axes.helpers import get_cool_off
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
