"""The global limiter's shared state in Redis instead of Postgres (settings.LLM_LIMITER_REDIS_URL).

The same four functions as allocation.limiter (try_acquire, release, renew_leases,
discard_lease), with the same semantics; `limiter.backend()` picks this module when the
setting is set. The decisions themselves (breaker, admission, settling a finished call) are
limiter.py's, shared by both backends; this module only loads, stores and keeps it atomic.

Keys, for one Redis (not Cluster: a transaction spans a model's keys and the lease's):
    llm_limiter:<model>:state    JSON: the buckets, paused_until, the AIMD controller and the
                                 breaker, the same fields as a ModelState row
    llm_limiter:<model>:leases   sorted set of the calls in flight, scored by expiry (Unix time)
    llm_limiter:lease:<id>       hash: model, holder, input_estimate (expires on its own)
    llm_limiter:holder:<h:pid>   set of the lease ids a process holds, for renewal
    llm_limiter:lease_seq        counter for lease ids (ints, like Lease primary keys)

Atomicity: optimistic transactions. WATCH the model's keys, read them, decide in Python, then
MULTI/EXEC the writes; if another process wrote a watched key meanwhile, EXEC fails and we read
and decide again. A Lua script would run atomically in Redis, but it would have to port the
AIMD controller, the breaker and the bucket arithmetic to Lua, two copies of one algorithm
to keep in step; retries are cheap at a few hundred calls a second per model.

Expired leases never count (ZCOUNT from `now`) and are trimmed on every admission. Limits still
come from the ModelLimit table (cached per process for 2 s), and limit history still goes to
LimitChange rows. The admin reads ModelState rows, so each process mirrors a model's state
into its row at most once a second, and at once when the limit or a breaker moves; "calls in
flight" there counts Lease rows, which this backend does not write.
"""

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings

from allocation import limiter
from allocation.admission import Limits
from allocation.limiter import HOLDER, Attempted, LimiterParams, Outcome
from allocation.models import ModelState

logger = logging.getLogger(__name__)

PREFIX = "llm_limiter"
STATE_FIELDS = (
    "request_tokens",
    "input_tokens",
    "output_tokens",
    "refilled_at",
    "paused_until",
    "adaptive",
    "breaker",
)
# A Redis that does not answer must fail the call with a message, not hang it.
TIMEOUT_S = 2.0
LIMITS_CACHE_S = 2.0
MIRROR_EVERY_S = 1.0

_clients: dict[str, redis.Redis] = {}
_limits_cache: dict[str, tuple[float, Limits | None]] = {}
_mirrored_at: dict[str, float] = {}


# --- The four functions limiter.GlobalLimiter calls ------------------------------------


def try_acquire(model: str, *, input_estimate: int, params: LimiterParams, now: float) -> Attempted:
    limits = cached_limits(model)  # a Postgres read: outside the transaction, to keep it short

    def decide(pipe):
        state = _load(pipe, model)
        allowed, change = limiter.ask_breaker(state, params, now)
        attempted = Attempted(breaker_open=True)
        if allowed:
            admitted, wait_s = True, 0.0
            if limits is not None:
                decision = limiter.decide_admission(
                    state,
                    limits,
                    in_flight=_count(pipe, model, now),
                    input_estimate=input_estimate,
                    params=params,
                    now=now,
                )
                admitted, wait_s = decision.admitted, decision.wait_s or params.poll_s
            # The counter is not watched: an id spent on a failed EXEC is only skipped.
            lease_id = pipe.incr(_key("lease_seq")) if admitted else None
            attempted = Attempted(lease_id=lease_id, wait_s=0.0 if admitted else wait_s)
        pipe.multi()
        _store(pipe, model, state)
        pipe.zremrangebyscore(_leases_key(model), "-inf", now)
        if attempted.lease_id is not None:
            _add_lease(pipe, attempted.lease_id, model, input_estimate, params, now)
        return state, change, attempted

    state, change, attempted = _transact([_state_key(model), _leases_key(model)], decide)
    if change:
        _record(model, state, change)
    return attempted


def release(
    lease_id: int, model: str, result: Outcome, *, params: LimiterParams, now: float
) -> None:
    limits = cached_limits(model)

    def decide(pipe):
        lease = pipe.hgetall(_lease_key(lease_id))
        state = _load(pipe, model)
        change = limiter.apply_outcome(
            state,
            limits,
            result,
            input_estimate=int(lease.get("input_estimate", 0)),
            in_flight=_count(pipe, model, now),
            params=params,
            now=now,
        )
        pipe.multi()
        _store(pipe, model, state)
        _drop_lease(pipe, lease_id, model, lease.get("holder", HOLDER))
        return state, change

    state, change = _transact([_state_key(model), _leases_key(model), _lease_key(lease_id)], decide)
    _record(model, state, change)


def renew_leases(params: LimiterParams, now: float) -> int:
    holder_key = _holder_key(HOLDER)

    def decide(pipe):
        # A release removes its id from this set, so it cannot slip between reading the set
        # and re-adding the lease: the set is watched.
        leases = {
            lease_id: pipe.hget(_lease_key(lease_id), "model")
            for lease_id in pipe.smembers(holder_key)
        }
        pipe.multi()
        for lease_id, model in leases.items():
            if model is None:  # its hash expired: it was long dead
                pipe.srem(holder_key, lease_id)
                continue
            # Re-added even if an admission trimmed it (another machine's clock ran ahead).
            pipe.zadd(_leases_key(model), {lease_id: now + params.lease_ttl_s})
            pipe.expire(_lease_key(lease_id), _key_ttl(params))
        pipe.expire(holder_key, _key_ttl(params))
        return sum(model is not None for model in leases.values())

    return _transact([holder_key], decide)


def clock() -> float:
    """Unix time on the Redis server: one clock for every machine sharing the limits."""
    with _redis() as client:
        seconds, microseconds = client.time()
    return seconds + microseconds / 1_000_000


def discard_lease(lease_id: int) -> None:
    with _redis() as client:
        lease = client.hgetall(_lease_key(lease_id))
        pipe = client.pipeline()
        _drop_lease(pipe, lease_id, lease.get("model"), lease.get("holder", HOLDER))
        pipe.execute()


# --- Reading the state (tests, staff tools) ---------------------------------------------


def load_state(model: str) -> ModelState:
    """The model's state as an unsaved ModelState."""
    with _redis() as client:
        return _load(client, model)


def in_flight(model: str, now: float) -> int:
    with _redis() as client:
        return _count(client, model, now)


def cached_limits(model: str) -> Limits | None:
    """limiter.limits_for, remembered per process for LIMITS_CACHE_S."""
    cached = _limits_cache.get(model)
    if cached is None or time.monotonic() - cached[0] > LIMITS_CACHE_S:
        cached = _limits_cache[model] = (time.monotonic(), limiter.limits_for(model))
    return cached[1]


def forget_cached() -> None:
    """Drop this process's cached limits and mirror times (tests change them)."""
    _limits_cache.clear()
    _mirrored_at.clear()


# --- Storage ----------------------------------------------------------------------------


def _key(*parts) -> str:
    return ":".join((PREFIX, *map(str, parts)))


def _state_key(model: str) -> str:
    return _key(model, "state")


def _leases_key(model: str) -> str:
    return _key(model, "leases")


def _lease_key(lease_id) -> str:
    return _key("lease", lease_id)


def _holder_key(holder: str) -> str:
    return _key("holder", holder)


def _key_ttl(params: LimiterParams) -> int:
    """Lease hashes and holder sets outlive the lease itself, then clean themselves up."""
    return math.ceil(3 * params.lease_ttl_s)


def _load(client, model: str) -> ModelState:
    raw = client.get(_state_key(model))
    return ModelState(model=model, **(json.loads(raw) if raw else {}))


def _store(pipe, model: str, state: ModelState) -> None:
    pipe.set(_state_key(model), json.dumps(_fields(state)))


def _fields(state: ModelState) -> dict:
    return {name: getattr(state, name) for name in STATE_FIELDS}


def _count(client, model: str, now: float) -> int:
    # Leases expiring after `now` only (exclusive), as Postgres counts expires_at > now.
    return client.zcount(_leases_key(model), f"({now!r}", "+inf")


def _add_lease(pipe, lease_id, model, input_estimate, params: LimiterParams, now) -> None:
    pipe.zadd(_leases_key(model), {lease_id: now + params.lease_ttl_s})
    lease_key, holder_key = _lease_key(lease_id), _holder_key(HOLDER)
    pipe.hset(
        lease_key, mapping={"model": model, "holder": HOLDER, "input_estimate": input_estimate}
    )
    pipe.expire(lease_key, _key_ttl(params))
    pipe.sadd(holder_key, lease_id)
    pipe.expire(holder_key, _key_ttl(params))


def _drop_lease(pipe, lease_id, model: str | None, holder: str) -> None:
    if lease_id is None:  # nothing was admitted
        return
    if model is not None:
        pipe.zrem(_leases_key(model), lease_id)
    pipe.delete(_lease_key(lease_id))
    pipe.srem(_holder_key(holder), lease_id)


def _transact(keys: list[str], decide: Callable):
    """WATCH `keys`, run `decide(pipe)` (reads, then pipe.multi() and queued writes), EXEC;
    on a conflicting write by anyone else, run it again. Returns what `decide` returned."""
    with _redis() as client, client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(*keys)
                outcome = decide(pipe)
                pipe.execute()
                return outcome
            except redis.WatchError:
                continue


@contextmanager
def _redis() -> Iterator[redis.Redis]:
    url = settings.LLM_LIMITER_REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url,
            socket_connect_timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
            decode_responses=True,
        )
    try:
        yield client
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RuntimeError(
            f"The limiter's Redis at {_without_password(url)} is not answering: {exc}"
        ) from exc


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- Postgres, for staff: limit history and the admin's copy of the state --------------


def _record(model: str, state: ModelState, change: str | None) -> None:
    """Log a change of limit or breaker, and mirror the state into the model's ModelState row
    (at once after a change, else at most once a second per process)."""
    last = _mirrored_at.get(model, -math.inf)
    if not change and time.monotonic() - last < MIRROR_EVERY_S:
        return
    _mirrored_at[model] = time.monotonic()
    try:
        ModelState.objects.update_or_create(model=model, defaults=_fields(state))
        if change:
            limiter.log_change(model, state, reason=change)
    except Exception:  # noqa: BLE001 - the call already counted in Redis; only the copy is late
        logger.exception("could not copy the limiter state of %s to Postgres", model)
