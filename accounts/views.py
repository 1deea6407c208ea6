"""Signing up and in for the reading page (staff sign in at /admin/)."""

from django.contrib.auth import login
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import time_zones
from accounts.forms import SignUpForm
from accounts.models import Profile


@sensitive_post_parameters("password1", "password2")
def sign_up(request):
    if request.user.is_authenticated:
        return redirect("pages:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("pages:home")
    return render(request, "accounts/sign_up.html", {"form": form})


@require_POST
def set_time_zone(request):
    """The page reports the browser's time zone: stored, it dates the reader's pages."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Sign in first."}, status=403)
    name = request.POST.get("time_zone", "")
    if not time_zones.is_known(name):
        return JsonResponse({"time_zone": f"{name[:64]!r} is not a known time zone."}, status=400)
    Profile.objects.update_or_create(user=request.user, defaults={"time_zone": name})
    request.session[time_zones.SESSION_KEY] = name
    return HttpResponse(status=204)
