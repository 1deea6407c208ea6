"""The limiter's parameters, named and defaulted in one place with the reason for each."""

from dataclasses import dataclass, field

from django.conf import settings

from allocation.adaptive_limit import AimdParams
from allocation.circuit_breaker import BreakerParams


@dataclass(frozen=True)
class LimiterParams:
    # Anthropic may enforce a per-minute limit over intervals as short as a second, so its
    # buckets hold about a second of refill.
    provider_burst_s: float = 1.0
    # Ours hold a tenth less. Both refill at the same rate and see the same requests, so the
    # provider's bucket then always holds more than ours: the margin absorbs jitter in when
    # our requests arrive, instead of each early arrival costing a 429 and a pause.
    burst_s: float = 0.9
    # A killed worker's calls stop counting after this long; live workers renew every third.
    lease_ttl_s: float = 15.0
    # A request token due within this long is reserved on asking, and the call waits for it
    # (admission.admit): enough for each of a few processes asking at once to get one.
    reserve_s: float = 0.5
    # Waiting for a free slot held by another process: how often the queue head asks again
    # (a release in this process wakes it at once).
    poll_s: float = 0.5
    # Never sleep longer than this between asks, whatever the buckets say: other processes
    # give tokens back too, and staff may change the limits. Long enough that a call waiting
    # out a token bucket's debt costs no round trips beyond its admission and release.
    max_wait_s: float = 5.0
    # How often a process re-measures its clock against the shared server's.
    clock_refresh_s: float = 60.0
    aimd: AimdParams = field(default_factory=AimdParams)
    breaker: BreakerParams = field(default_factory=BreakerParams)


def get_params() -> LimiterParams:
    """Defaults, with settings.LLM_LIMITER (a dict) overriding them; tests shorten the times."""
    overrides = dict(getattr(settings, "LLM_LIMITER", {}) or {})
    aimd = AimdParams(**overrides.pop("aimd", {}))
    breaker = BreakerParams(**overrides.pop("breaker", {}))
    return LimiterParams(aimd=aimd, breaker=breaker, **overrides)
