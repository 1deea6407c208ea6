"""Times on a reader's pages in their own time zone.

The page sends the browser's zone (Intl's IANA name) when it differs from the session's, so
the preference follows the reader without a settings form; every page after that shows times
in it, with the zone's abbreviation beside them. It is kept on the reader's profile and in
their session, which every request reads anyway: dating a page costs no query.
"""

import zoneinfo
from functools import lru_cache

from django.utils import timezone

SESSION_KEY = "time_zone"


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_known(name: str) -> bool:
    return name in known_zones()


class TimeZoneMiddleware:
    """Activates the reader's time zone, from their session, for the request (UTC otherwise)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.session.get(SESSION_KEY, "") if hasattr(request, "session") else ""
        if name and is_known(name):
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        return self.get_response(request)
