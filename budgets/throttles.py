"""DRF throttles: reading creation per user (a default in settings, a per-user or per-group
rate staff set in the admin, or an exemption), and the token endpoint per client address.

Counts live in the "throttle" cache, shared by every web process (the database cache table by
default, Redis with THROTTLE_REDIS_URL); DRF answers 429 with Retry-After.
"""

from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from budgets.selectors import quota_for


class SharedRateThrottle(SimpleRateThrottle):
    cache = caches["throttle"]

    def wait(self):
        # DRF gives no Retry-After when staff lowered a rate below the requests already
        # counted; the oldest request's expiry is still the honest answer.
        waited = super().wait()
        if waited is None and self.history:
            waited = self.duration - (self.now - self.history[-1])
        return waited


class ReadingCreateThrottle(SharedRateThrottle):
    """POSTs that create readings, per user: the user's own rate, else their groups' (the
    most generous if several), else settings' default; exempt users are not counted."""

    scope = "reading_create"

    def allow_request(self, request, view):
        if request.method != "POST" or not request.user.is_authenticated:
            return True
        quota = quota_for(request.user)
        if quota.exempt_from_throttles:
            return True
        self.rate = quota.reading_rate or self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TokenThrottle(SharedRateThrottle):
    """Password guesses at the token endpoint, per client address (REST_FRAMEWORK's
    NUM_PROXIES says how many proxies' X-Forwarded-For entries to trust)."""

    scope = "token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
