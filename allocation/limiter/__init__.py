"""The shared limiter: one provider's limits, kept by every worker process on every machine.

Read in this order:
    params.py     LimiterParams: every tunable, with the reason for its default
    state.py      the plain values passed around: LimiterState (one model's shared state),
                  Admission, CallReport, LeaseInfo, Snapshot
    decisions.py  the rules, pure functions on a LimiterState: the breaker, admission by the
                  buckets and the adaptive limit, settling a finished call
    backends/     where the state lives: LimiterBackend writes the acquire, release, renew
                  and reset sequences once; PostgresBackend and RedisBackend supply storage;
                  get_backend() picks one from settings.LLM_LIMITER_REDIS_URL
    holder.py     which process holds a lease (read after fork, never at import)
    call_order.py which waiting call goes next (critical path, or arrival once limits bind)
    gate.py       the in-process side: Permit and its exits, queues, pollers, the clock,
                  lease renewal; get_limiter() gives the calling event loop's

Callers (the engine, the admin, the reports, the bench) use only what is exported here.
"""

from allocation.limiter.backends import LimiterBackend, get_backend
from allocation.limiter.call_order import CallOrder
from allocation.limiter.gate import BreakerOpen, GlobalLimiter, Permit, get_limiter
from allocation.limiter.params import LimiterParams, get_params
from allocation.limiter.state import (
    Admission,
    CallCost,
    CallReport,
    LimiterState,
    LogRow,
    Snapshot,
)

__all__ = [
    "Admission",
    "BreakerOpen",
    "CallCost",
    "CallOrder",
    "CallReport",
    "GlobalLimiter",
    "LimiterBackend",
    "LimiterParams",
    "LimiterState",
    "LogRow",
    "Permit",
    "Snapshot",
    "get_backend",
    "get_limiter",
    "get_params",
]
