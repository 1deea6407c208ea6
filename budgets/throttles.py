"""DRF throttles: reading creation per user (a default in settings, a per-user or per-group
rate staff set in the admin, or an exemption), and the token endpoint per client address.

Each is a token bucket shared by every web process and taken atomically
(budgets/rate_buckets.py); DRF answers 429 with Retry-After, the time until the bucket has
room again.
"""

from rest_framework.throttling import SimpleRateThrottle

from budgets import rate_buckets
from budgets.selectors import quota_for


class SharedRateThrottle(SimpleRateThrottle):
    """DRF's rates and cache keys (`rate`, `scope`, get_cache_key), counted in a bucket."""

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.waiting_s = rate_buckets.take(key, limit=self.num_requests, period_s=self.duration)
        return self.waiting_s == 0.0

    def wait(self):
        return self.waiting_s


class ReadingCreateThrottle(SharedRateThrottle):
    """POSTs that create readings, per user: the user's own rate, else their groups' (the
    most generous if several), else settings' default; exempt users are not counted. The
    reading page's form is counted in the same bucket (reading_creation_wait)."""

    scope = "reading_create"

    def allow_request(self, request, view):
        if request.method != "POST" or not request.user.is_authenticated:
            return True
        self.waiting_s = reading_creation_wait(request.user)
        return self.waiting_s == 0.0


def reading_creation_wait(user) -> float:
    """Take one of `user`'s reading creations: 0.0 if it may go now, else the seconds until
    one may. Every way of creating a reading (the API, the reading page) comes through here."""
    quota = quota_for(user)
    if quota.exempt_from_throttles:
        return 0.0
    throttle = ReadingCreateThrottle()
    limit, period_s = throttle.parse_rate(quota.reading_rate or throttle.get_rate())
    return rate_buckets.take(
        throttle.cache_format % {"scope": throttle.scope, "ident": user.pk},
        limit=limit,
        period_s=period_s,
    )


class EstimateThrottle(SharedRateThrottle):
    """Cost estimates, per user: each renders every prompt of a reading, so they are counted
    as creations are, at ESTIMATE_RATE."""

    scope = "estimate"

    def allow_request(self, request, view):
        if request.user.is_authenticated and quota_for(request.user).exempt_from_throttles:
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        if not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TokenThrottle(SharedRateThrottle):
    """Password guesses at the token endpoint, per client address: the connection's, or
    what a trusted proxy says it is (TRUSTED_PROXIES, applied by the web server)."""

    scope = "token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
