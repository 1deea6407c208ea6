"""How a call to the provider ended: one enum for the call log, the retry policy, the
adaptive limit, the circuit breaker and the limiter's permits.

A call that never reached an end the provider decided (cancelled, or our own bug) has no
outcome the limiter learns from: its permit is ignored (`Permit.ignore`).

The call log has two more: a row is written as `pending` just before the request leaves
(so a worker killed mid-call leaves a trace), and recovery turns a dead worker's pending
rows into `lost` ones, priced from the request's input tokens (the worker's recovery). Only
the log uses them: no permit ends with either, so the limiter and the breaker never see them.
"""

from django.db import models


class CallOutcome(models.TextChoices):
    OK = "ok", "OK"
    RATE_LIMITED = "rate_limited", "Rate limited (429)"
    OVERLOADED = "overloaded", "Overloaded (529)"
    ERROR = "error", "Error"
    TIMEOUT = "timeout", "Timeout"
    PENDING = "pending", "In flight"
    LOST = "lost", "Lost (worker died mid-call)"

    @property
    def is_failure(self) -> bool:
        """The model's fault: the breaker counts it. A 429 means the model is fine and we are
        too fast (the adaptive limit's business), so it is not one."""
        return self in FAILURES


# Overloads, server errors and timeouts: what a circuit breaker counts and a fallback cures.
FAILURES = frozenset({CallOutcome.OVERLOADED, CallOutcome.ERROR, CallOutcome.TIMEOUT})


def outcome(value: str) -> CallOutcome:
    """The enum member for a stored or reported value; a clear error for anything else."""
    try:
        return CallOutcome(value)
    except ValueError:
        raise ValueError(
            f"unknown outcome {value!r}; expected one of {sorted(CallOutcome.values)}"
        ) from None
